import net from 'node:net';
import path from 'node:path';
import type { Config } from '../config.js';
import { SOCKET_FILE } from '../db/embedded/pglite-socket-server.js';
import { dbUrlOf, socketDirOf } from '../db/embedded/shared-store.js';

/**
 * `pg-workspace-mcp db-url`: the connection string for psql and GUI tools. For the embedded store
 * it names the unix socket directory its owner serves on, and says on stderr when no process
 * serves it right now (the URL stays the same whichever process owns the store).
 */
export async function printDbUrl(config: Config): Promise<number> {
  if (config.databaseUrl) {
    process.stdout.write(`${config.databaseUrl}\n`);
    return 0;
  }
  process.stdout.write(`${dbUrlOf(config.dataDir)}\n`);
  const socketPath = path.join(socketDirOf(config.dataDir), SOCKET_FILE);
  const serving = await new Promise<boolean>((resolve) => {
    const socket = net.connect(socketPath, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
  if (!serving) {
    process.stderr.write(
      `pg-workspace-mcp: no process serves ${config.dataDir} right now; the URL works while a pg-workspace-mcp server runs on it.\n`,
    );
  }
  return 0;
}
