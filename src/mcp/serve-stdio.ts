import type { Config } from '../config.js';
import { ProvisioningEngine } from '../engine.js';
import { createStderrLogger } from '../logger.js';
import { packageVersion } from '../package-info.js';
import { createServer } from './server.js';
import { StdioLineTransport, UnreadableMessageError } from './stdio-transport.js';

/** Serves MCP on stdin/stdout until the client goes away or a signal says stop. */
export async function serveStdio(config: Config): Promise<void> {
  const log = createStderrLogger(config.logLevel);
  const engine = new ProvisioningEngine(config, log);
  const { server, cleanup } = createServer({ engine, allowedProjects: config.allowedProjects, clientElsewhere: false });

  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { reason });
    try {
      await cleanup();
    } catch (error) {
      log.error('error during shutdown', { error: String(error) });
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // The client closing our stdin is how stdio servers are told to go; staying would orphan us.
  process.stdin.on('end', () => void shutdown('stdin ended'));
  process.stdin.on('close', () => void shutdown('stdin closed'));
  process.on('unhandledRejection', (error) => log.error('unhandled rejection', { error: String(error) }));

  const transport = new StdioLineTransport();
  // Set before `connect`, which chains its own handler after this one.
  transport.onerror = (error) =>
    log.warn(error instanceof UnreadableMessageError ? 'unreadable message on stdin' : 'stdin failed', { error: error.message });
  await server.connect(transport);
  log.info('serving MCP on stdio', { version: packageVersion, database: config.databaseUrl ? 'postgres' : config.dataDir });
}
