/**
 * Builds dist/pglite-template: a closed, freshly initialised PGlite data directory. A new
 * embedded store is a copy of it (a fraction of a second) instead of PGlite's initdb (about five
 * seconds here). It is rebuilt when the installed PGlite version or TEMPLATE_FORMAT changes.
 *
 * The template is kept small, since every new store copies it: initdb runs with 1 MiB WAL
 * segments (PostgreSQL's default 16 MiB segment is mostly zeros after initdb), and the segments
 * the shutdown checkpoint recycled for later use are left out (PostgreSQL makes new ones when it
 * needs them). A copy of the result is opened here: a template PostgreSQL cannot start from is never
 * published.
 *
 * Beside the data it writes PGLITE_TEMPLATE.json: the PGlite version and every directory and
 * file (with its size). `npm pack` drops empty directories (PostgreSQL needs 14), so the server
 * makes them from this list when it copies the template, and checks the copy against it
 * (src/db/embedded/pglite-store.ts).
 */
import { cp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { listTree } from '../dist/src/db/embedded/pglite-store.js';

const TEMPLATE = 'dist/pglite-template';
const MANIFEST = 'PGLITE_TEMPLATE.json';
/** Bumped when the way the template is made changes, so built templates are made again. */
const TEMPLATE_FORMAT = 2;
const { version } = JSON.parse(await readFile('node_modules/@electric-sql/pglite/package.json', 'utf8'));
const built = await readFile(`${TEMPLATE}/${MANIFEST}`, 'utf8').then((text) => JSON.parse(text), () => ({}));

if (built.pgliteVersion !== version || built.format !== TEMPLATE_FORMAT) {
  const partial = `${TEMPLATE}.partial`;
  await rm(partial, { recursive: true, force: true });
  const pglite = await PGlite.create({ dataDir: partial, extensions: { vector }, initDbStartParams: ['--wal-segsize=1'] });
  await pglite.close();
  // After a shutdown checkpoint the lowest segment holds the checkpoint record; the higher ones
  // are older segments renamed for reuse, whose content PostgreSQL never reads.
  const segments = (await readdir(`${partial}/pg_wal`)).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort();
  await Promise.all(segments.slice(1).map((name) => rm(`${partial}/pg_wal/${name}`)));
  const trial = `${TEMPLATE}.trial`;
  await rm(trial, { recursive: true, force: true });
  await cp(partial, trial, { recursive: true });
  const check = await PGlite.create({ dataDir: trial, extensions: { vector } });
  await check.query('SELECT 1');
  await check.close();
  await rm(trial, { recursive: true, force: true });
  const { dirs, files } = await listTree(partial);
  await writeFile(`${partial}/${MANIFEST}`, `${JSON.stringify({ pgliteVersion: version, format: TEMPLATE_FORMAT, dirs, files })}\n`);
  await rm(TEMPLATE, { recursive: true, force: true });
  await rename(partial, TEMPLATE);
}
