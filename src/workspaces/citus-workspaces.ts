import { citusForeignKeyRefusal } from '../db/postgres/citus.js';
import type { Queryable } from '../db/database.js';
import { pgError } from '../db/sql-errors.js';
import type { InstallPlan } from '../installer/install-plan.js';
import type { WorkspaceScript } from './workspace-ddl.js';

/**
 * A workspace script on Citus, one statement per round trip: DDL on an existing workspace's
 * distributed tables is forwarded to its worker as the query string it came in, which must
 * hold a single statement. Fails with the script position of the failing statement, as a
 * one-string run would.
 */
export async function runScriptStatementwise(
  tx: Queryable,
  script: WorkspaceScript,
  fail: (error: unknown, position: number) => Error,
): Promise<void> {
  await tx.exec(script.prelude);
  for (const { at, statement } of script.starts) {
    try {
      await tx.exec(statement.sql);
    } catch (error) {
      throw fail(error, at + Number(pgError(error)?.position ?? 1));
    }
  }
  if (script.distribute) await tx.exec(script.distribute);
}

/** A workspace design Citus refuses, with what to change. */
export class CitusDesignError extends Error {
  override name = 'CitusDesignError';
}

/**
 * Citus's refusal of a foreign key from a workspace table to a global table that is not a
 * reference table, as an error naming the extension whose workspace DDL declares it.
 */
export function explainCitusRefusal(plan: InstallPlan, projectId: string, error: unknown): CitusDesignError | undefined {
  const refusal = citusForeignKeyRefusal(error);
  if (!refusal) return undefined;
  const table = refusal.from?.split('.').at(-1)?.replaceAll('"', '');
  const owner = plan.extensions.find((p) =>
    [...p.workspace.structural, ...p.workspace.migrations.flatMap((m) => m.statements)].some((s) => s.createsTable?.name === table),
  );
  const which = refusal.from
    ? `${refusal.from} references ${refusal.to} (constraint ${refusal.constraint ?? '?'})`
    : `a workspace table references ${refusal.to}`;
  return new CitusDesignError(
    `Provisioning workspace "${projectId}" failed; nothing was changed. On Citus every workspace is a distributed ` +
      `schema, and its tables may only have foreign keys to tables in the same workspace or to reference tables: ` +
      `${which}${owner ? `, declared in extension "${owner.extension.id}"'s workspace DDL` : ''}. ` +
      `Either make ${refusal.to} a reference table (once, on the coordinator, as its owner: ` +
      `SELECT create_reference_table('${refusal.to.replaceAll("'", "''")}');), or drop the foreign key from the workspace DDL.`,
    { cause: error },
  );
}
