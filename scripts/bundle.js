/**
 * Bundles the built server so that spawn-to-`initialize` pays for one file, not for resolving,
 * reading and compiling the hundreds of modules of the MCP SDK, zod and ajv (Node 20 has no
 * compile cache). Only what `initialize` needs is bundled: every other dependency (pg, PGlite,
 * the SQL parser: wasm, native addons, optional requires) stays a package import, and with
 * code splitting the engine's lazy `import()`s stay lazy chunks, loaded while booting.
 * Runs after `tsc`, on its output, from the package root (as `npm run build` does).
 */
import { copyFile, readFile, rm } from 'node:fs/promises';
import { build } from 'esbuild';

const BUNDLED = new Set(['@modelcontextprotocol/sdk', 'zod']);
const { dependencies } = JSON.parse(await readFile('package.json', 'utf8'));

/** @param {Record<string, string>} entryPoints @param {string} outdir */
async function bundle(entryPoints, outdir) {
  // Chunk names carry a content hash: without this, every rebuild left the last build's chunks
  // beside the new ones, and `npm pack` shipped them all (dist/server/*.js).
  await rm(outdir, { recursive: true, force: true });
  return build({
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    minify: true,
    sourcemap: true,
    external: Object.keys(dependencies).filter((name) => !BUNDLED.has(name)),
    logLevel: 'warning',
  });
}

await bundle({ main: 'dist/src/main.js' }, 'dist/server');
// PGlite's worker thread runs from a file of its own, beside the module that starts it: in the
// bundle and in tsc's output alike (bench/ imports the latter).
const WORKER = 'src/db/embedded/pglite-thread-worker.js';
await copyFile(WORKER, 'dist/server/pglite-thread-worker.js');
await copyFile(WORKER, 'dist/src/db/embedded/pglite-thread-worker.js');
// The benchmark's own servers are built the same way, so that their figures are comparable.
await bundle({ 'bare-server': 'dist/bench/bare-server.js', 'noop-server': 'dist/bench/noop-server.js' }, 'dist/bench-servers');
