import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root is found by walking up from this module because the same code runs from
 * `src/` (tests) and from `dist/src/` (the built server), at different depths.
 */
function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('pg-workspace-mcp: package.json not found above ' + dir);
    dir = parent;
  }
  return dir;
}

export const packageRoot = findPackageRoot();

export const packageVersion: string = (
  JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }
).version;

/** A freshly initialised PGlite data directory, built by `npm run build` (absent when running from source only). */
export const pgliteTemplateDir = path.join(packageRoot, 'dist', 'pglite-template');
