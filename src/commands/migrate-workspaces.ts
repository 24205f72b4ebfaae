import type { Config } from '../config.js';
import { ProvisioningEngine } from '../engine.js';
import { createStderrLogger } from '../logger.js';
import { terminalSafe } from '../terminal-text.js';
import type { UpgradeProgress, UpgradeSummary } from '../workspaces/workspace-fleet.js';

/** How long the install itself may take, on top of the wait for its lock, before the command gives up. */
const INSTALL_ALLOWANCE_MS = 60_000;

/**
 * `pg-workspace-mcp migrate-workspaces`: installs the global schema if needed, then upgrades
 * every lagging workspace. Progress goes to stderr (a bar on a terminal, lines otherwise), the
 * summary to stdout; the exit code is 0 only when every workspace succeeded.
 */
export async function migrateWorkspaces(config: Config, options: { concurrency: number; dryRun: boolean }): Promise<number> {
  const log = createStderrLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const engine = new ProvisioningEngine({ ...config, maxConnections: options.concurrency + 1 }, log);
  const abort = new AbortController();
  const interrupt = () => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write('\nInterrupted: finishing the workspaces in progress (Ctrl-C again to quit now).\n');
    abort.abort();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  try {
    // The home database, then each member database workspaces are spread over (databases/placements.ts).
    const databases = await engine.readyAll(config.lockTimeoutMs + INSTALL_ALLOWANCE_MS);
    let failed = false;
    for (const [i, { fleet, db }] of databases.entries()) {
      if (abort.signal.aborted) break;
      if (databases.length > 1) process.stdout.write(`${i === 0 ? '' : '\n'}Database ${db.description}:\n`);
      const summary = await fleet.upgrade({
        concurrency: options.concurrency,
        dryRun: options.dryRun,
        signal: abort.signal,
        onProgress: progressReporter(),
      });
      // The failures quote errors that agents' triggers may have raised: escaped for the terminal.
      process.stdout.write(terminalSafe(formatSummary(summary, options.dryRun)));
      failed ||= summary.failed > 0 || summary.interrupted;
    }
    return failed || abort.signal.aborted ? 1 : 0;
  } catch (error) {
    process.stderr.write(terminalSafe(`pg-workspace-mcp migrate-workspaces: ${engine.explain(error)}\n`));
    return 1;
  } finally {
    await engine.close();
  }
}

function progressReporter(): (p: UpgradeProgress) => void {
  const tty = process.stderr.isTTY === true;
  const started = Date.now();
  let lastLine = 0;
  return (p) => {
    const rate = (p.done / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1);
    const counts = `${p.done}/${p.total} (upgraded ${p.upgraded}, skipped ${p.skipped}, failed ${p.failed}) ${rate}/s`;
    if (tty) {
      const width = 30;
      const filled = Math.round((p.done / Math.max(1, p.total)) * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${counts}${p.done === p.total ? '\n' : ''}`);
    } else if (p.done === p.total || Date.now() - lastLine >= 1000) {
      lastLine = Date.now();
      process.stderr.write(`migrate-workspaces: ${counts}\n`);
    }
  };
}

function formatSummary(s: UpgradeSummary, dryRun: boolean): string {
  if (dryRun) {
    const lines = s.plan.map((p) => `  ${p.projectId}: ${p.pending.length > 0 ? p.pending.join(', ') : 'schema files changed (DDL re-applied)'}`);
    return `Dry run: ${s.total} workspace(s) would be upgraded.\n${lines.join('\n')}${lines.length ? '\n' : ''}`;
  }
  const failures = s.failures.map((f) => `  ${f.projectId}: ${f.error.split('\n').join('\n    ')}`);
  return (
    `Upgraded ${s.upgraded}, skipped ${s.skipped} (already current or gone), failed ${s.failed} of ${s.total} lagging workspace(s) in ${(s.ms / 1000).toFixed(1)} s.` +
    (s.sandboxes.adopted > 0 ? `\nGave ${s.sandboxes.adopted} workspace(s) their SQL sandbox (PostgreSQL role).` : '') +
    (s.sandboxes.problem ? `\nSQL sandboxes not made: ${s.sandboxes.problem}` : '') +
    (s.interrupted ? `\nInterrupted: ${s.total - s.done} not attempted; run the command again to continue.` : '') +
    (failures.length ? `\nFailures:\n${failures.join('\n')}` : '') +
    '\n'
  );
}
