import type { Config } from '../config.js';
import type { EmbeddingsConfig } from '../embeddings/embeddings-config.js';
import { describeSpace } from '../embeddings/embedding-spaces.js';
import type { ReembedOutcome, ReembedProgress } from '../embeddings/reembed.js';
import { ProvisioningEngine } from '../engine.js';
import { createStderrLogger } from '../logger.js';

/** How long the install itself may take, on top of the wait for its lock, before the command gives up. */
const INSTALL_ALLOWANCE_MS = 60_000;

/**
 * `pg-workspace-mcp reembed (--project ID | --all)`: moves pinned vector columns to the configured
 * embedding space. Progress goes to stderr, the summary to stdout. Exit code 0 when every column
 * is in the new space, 1 when one failed, another run was moving one, or the run was interrupted (a rerun continues), 2 when
 * it could not run.
 */
export async function reembedWorkspaces(config: Config & { embeddings: EmbeddingsConfig }, projectId: string | undefined): Promise<number> {
  const log = createStderrLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const engine = new ProvisioningEngine(config, log);
  const abort = new AbortController();
  const interrupt = () => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write('\nInterrupted: stopping; the batches written are kept and a rerun continues from them (Ctrl-C again to quit at once).\n');
    abort.abort();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  try {
    let databases;
    try {
      // One workspace's database, or the home database and each member database (databases/placements.ts).
      const wait = config.lockTimeoutMs + INSTALL_ALLOWANCE_MS;
      databases = projectId ? [await engine.readyFor(projectId, 'existing', wait)] : await engine.readyAll(wait);
    } catch (error) {
      process.stderr.write(`pg-workspace-mcp reembed: ${engine.explain(error)}\n`);
      return 2;
    }
    const outcomes = [];
    for (const { db, sandbox, embedder } of databases) {
      if (!embedder) throw new Error('reembed runs with an embedding provider configured');
      process.stderr.write(`reembed: moving pinned columns of ${projectId ? `workspace "${projectId}"` : 'every workspace'}${databases.length > 1 ? ` in ${db.description}` : ''} to ${describeSpace(embedder.space)}\n`);
      const { reembed } = await import('../embeddings/reembed.js');
      outcomes.push(
        ...(await reembed(db, sandbox, embedder, {
          projectId,
          batchRows: Math.min(config.embeddings.batchSize * config.embeddings.concurrency, sandbox.maxRowsCap),
          maxInputChars: config.embeddings.maxInputChars,
          signal: abort.signal,
          onProgress: progressReporter(),
        })),
      );
    }
    process.stdout.write(formatSummary(outcomes));
    return outcomes.some((o) => o.outcome === 'failed' || o.outcome === 'interrupted' || o.outcome === 'busy') ? 1 : 0;
  } catch (error) {
    process.stderr.write(`pg-workspace-mcp reembed: ${engine.explain(error)}\n`);
    return 1;
  } finally {
    await engine.close();
  }
}

/** A line per column at most once a second, and when a column is done. */
function progressReporter(): (p: ReembedProgress) => void {
  let lastLine = 0;
  return (p) => {
    if (p.done < p.total && Date.now() - lastLine < 1000) return;
    lastLine = Date.now();
    process.stderr.write(`reembed: ${p.projectId} ${p.table}.${p.column}: ${p.done} of ${p.total} rows\n`);
  };
}

/** Texts longer than the maximum are embedded from their beginning: the summary says how many. */
function cutNote(o: ReembedOutcome): string {
  return o.cut > 0 ? `; ${o.cut} cut to PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS` : '';
}

function formatSummary(outcomes: readonly ReembedOutcome[]): string {
  if (outcomes.length === 0) return 'No pinned vector columns: nothing to re-embed.\n';
  const lines = outcomes.map((o) => {
    const name = `${o.projectId} ${o.table}.${o.column}`;
    switch (o.outcome) {
      case 'current':
        return `  ${name}: already in this space`;
      case 'moved':
        return `  ${name}: moved (${o.total} rows, ${o.embedded} embedded by this run${cutNote(o)})`;
      case 'interrupted':
        return `  ${name}: interrupted at ${o.done} of ${o.total} rows; run the command again to continue`;
      case 'busy':
        return `  ${name}: not moved: ${o.error ?? 'another run holds it'}`;
      case 'failed':
        return `  ${name}: failed at ${o.done} of ${o.total} rows: ${o.error ?? 'unknown error'}\n    A rerun continues from there.`;
    }
  });
  return `${lines.join('\n')}\n`;
}
