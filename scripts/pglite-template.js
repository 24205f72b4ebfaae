/**
 * Builds dist/pglite-template: a closed, freshly initialised PGlite data directory. A new
 * embedded store is a copy of it (a tenth of a second) instead of PGlite's initdb (about five
 * seconds here). It is rebuilt only when the installed PGlite version changes.
 *
 * Beside the data it writes PGLITE_TEMPLATE.json: the PGlite version and every directory and
 * file (with its size). `npm pack` drops empty directories (PostgreSQL needs 14), so the server
 * makes them from this list when it copies the template, and checks the copy against it
 * (src/db/pglite-store.ts).
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { listTree } from '../dist/src/db/pglite-store.js';

const TEMPLATE = 'dist/pglite-template';
const MANIFEST = 'PGLITE_TEMPLATE.json';
const { version } = JSON.parse(await readFile('node_modules/@electric-sql/pglite/package.json', 'utf8'));
const built = await readFile(`${TEMPLATE}/${MANIFEST}`, 'utf8').then((text) => JSON.parse(text).pgliteVersion, () => '');

if (built !== version) {
  const partial = `${TEMPLATE}.partial`;
  await rm(partial, { recursive: true, force: true });
  const pglite = await PGlite.create({ dataDir: partial, extensions: { vector } });
  await pglite.close();
  const { dirs, files } = await listTree(partial);
  await writeFile(`${partial}/${MANIFEST}`, `${JSON.stringify({ pgliteVersion: version, dirs, files })}\n`);
  await rm(TEMPLATE, { recursive: true, force: true });
  await rename(partial, TEMPLATE);
}
