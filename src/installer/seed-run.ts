import type { Database, Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { describePgError } from '../db/sql-errors.js';
import type { Statement } from '../extensions/extension-sql.js';
import { seedTargets } from './extension-rules.js';
import { InstallError } from './install-error.js';
import type { PreparedExtension } from './prepared-extension.js';

/**
 * Runs an extension's seeds in one transaction, then runs them again in it and requires the
 * second run to succeed and to add no rows. Every later install runs the seeds again, so
 * PostgreSQL proves here, before anything is committed, what the parsed rules
 * (extension-rules.ts) can only infer: an `ON CONFLICT` on the wrong key, or on a key the rows
 * never collide on (a generated id), is refused now instead of breaking a later boot.
 */
export async function applySeeds(db: Database, p: PreparedExtension): Promise<number> {
  if (p.seeds.length === 0) return 0;
  const targets = seedTargets(p.seeds);
  await db.transaction(async (tx) => {
    await runSeeds(tx, p.seeds, (statement, error) => InstallError.statementFailed(p.extension.id, 'seeds', statement, error));
    const before = await countRows(tx, targets);
    await runSeeds(tx, p.seeds, (statement, error) =>
      notIdempotent(
        p,
        statement,
        `Running it a second time, as the next install will, failed: ${describePgError(error)}\n` +
          'Name the key the rows collide on, ON CONFLICT (that_key), or use ON CONFLICT DO NOTHING without a key.',
        error,
      ),
    );
    const after = await countRows(tx, targets);
    for (const [i, { schema, table }] of targets.entries()) {
      const added = (after[i] as number) - (before[i] as number);
      if (added > 0) {
        throw notIdempotent(
          p,
          undefined,
          `Running the seeds a second time, as the next install will, added ${added} more row(s) to ${schema}.${table}: ` +
            'their ON CONFLICT never fires. Give the seeded rows a natural key (a UNIQUE constraint, not a generated id) ' +
            'and name it: ON CONFLICT (that_key) DO NOTHING.',
        );
      }
    }
  });
  return p.seeds.length;
}

async function runSeeds(
  tx: Queryable,
  seeds: readonly Statement[],
  failure: (statement: Statement, error: unknown) => InstallError,
): Promise<void> {
  for (const statement of seeds) {
    try {
      await tx.exec(statement.sql);
    } catch (error) {
      throw failure(statement, error);
    }
  }
}

async function countRows(tx: Queryable, targets: ReadonlyArray<{ schema: string; table: string }>): Promise<number[]> {
  if (targets.length === 0) return [];
  const counts = targets.map(({ schema, table }) => `(SELECT count(*) FROM ${quoteIdent(schema)}.${quoteIdent(table)})`);
  const [row] = await tx.query<{ counts: string[] }>(`SELECT ARRAY[${counts.join(', ')}]::text[] AS counts`);
  return (row?.counts ?? []).map(Number);
}

function notIdempotent(p: PreparedExtension, statement: Statement | undefined, detail: string, cause?: unknown): InstallError {
  const where = statement ? `${statement.file} statement ${statement.number}/${statement.total} (line ${statement.line}): ` : '';
  return new InstallError(
    p.extension.id,
    'seeds',
    `${where}the seeds are not idempotent; the phase was rolled back. ${detail}`,
    cause,
    statement,
  );
}
