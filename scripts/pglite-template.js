/**
 * Builds dist/pglite-template: a closed, freshly initialised PGlite data directory. A new
 * embedded store is a copy of it (a tenth of a second) instead of PGlite's initdb (about five
 * seconds here). It is rebuilt only when the installed PGlite version changes.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';

const TEMPLATE = 'dist/pglite-template';
const STAMP = `${TEMPLATE}/PGLITE_VERSION`;
const { version } = JSON.parse(await readFile('node_modules/@electric-sql/pglite/package.json', 'utf8'));

if ((await readFile(STAMP, 'utf8').catch(() => '')) !== version) {
  const partial = `${TEMPLATE}.partial`;
  await rm(partial, { recursive: true, force: true });
  const pglite = await PGlite.create({ dataDir: partial, extensions: { vector } });
  await pglite.close();
  await writeFile(`${partial}/PGLITE_VERSION`, version);
  await rm(TEMPLATE, { recursive: true, force: true });
  await rename(partial, TEMPLATE);
}
