import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/fixtures.js';
import { startCommand, type ServerProcess } from './support/server-process.js';

const run = promisify(execFile);

/** npm as a user runs it: none of the npm_* settings of the `npm test` that runs this file. */
function npm(args: string[], cwd: string) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
  return run('npm', args, { cwd, env, maxBuffer: 64 * 1024 * 1024 });
}

describe('the published package', () => {
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
  });

  it(
    'packs only what runs, installs with npm, and answers ensure_workspace on a fresh HOME, first launch and second',
    { timeout: 600_000 },
    async () => {
      const root = await tempDir('pgw-pack-');
      // `npm test` has just built dist/; prepack would rebuild it under the other test files' feet.
      const { stdout } = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', root], process.cwd());
      const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
      const files = (packed?.files ?? []).map((f) => f.path);
      expect(files).toEqual(expect.arrayContaining(['LICENSE', 'package.json', 'dist/server/main.js', 'dist/pglite-template/PGLITE_TEMPLATE.json']));
      expect(files.filter((f) => /^dist\/(bench|bench-servers|test|src|tools)\/|\.js\.map$|\.ts$/.test(f))).toEqual([]);

      const prefix = path.join(root, 'prefix');
      await npm(['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', path.join(root, packed?.filename ?? '')], root);
      const bin = path.join(prefix, 'bin', 'pg-workspace-mcp');
      const home = path.join(root, 'home');

      for (const launch of ['first', 'second']) {
        const server = await startCommand(bin, [], { HOME: home });
        servers.push(server);
        const result = await server.call('ensure_workspace', { project_id: 'client-a' });
        expect(result.isError, `${launch} launch: ${result.text}\n${server.stderr()}`).toBe(false);
        expect(result.data['created']).toBe(launch === 'first');
        await server.close();
      }
      // The default data directory, in the fresh HOME, with the directories npm pack dropped.
      await access(path.join(home, '.local', 'share', 'pg-workspace-mcp', 'pgdata', 'pg_notify'));
    },
  );
});
