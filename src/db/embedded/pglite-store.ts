import { access, constants, copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { pgliteTemplateDir } from '../../package-info.js';

/**
 * What scripts/pglite-template.js records beside the template: `npm pack` drops empty
 * directories (PostgreSQL needs 14 of them) and a copy may be cut short, so a copy is checked
 * against this list, and its missing empty directories are made, before it is used.
 */
export interface TemplateManifest {
  pgliteVersion: string;
  dirs: string[];
  files: Record<string, number>;
}

export const TEMPLATE_MANIFEST = 'PGLITE_TEMPLATE.json';

/**
 * Written into a new store before its first open and removed once it opened fine: a directory
 * that still has it is an initialisation that failed or was killed, never a store with data
 * (nothing is written before the first open returns), so it is made again. A marker rather than
 * a rename after the first open, because PGlite cannot move an open store and a second open
 * would double the time to a new store's first result.
 */
const INITIALISING = 'PGW_INITIALISING';

/**
 * PostgreSQL's default 128 MB of shared buffers are most of what PGlite's start costs (it
 * allocates and clears them in its WebAssembly memory): on 2 loaded cores a start took
 * 1.2-2.5 s with them and 0.6-1.2 s with 16 MB, and the process holds about 120 MB less. One
 * session's working set is small and the OS page cache keeps the files: provisioning and lookups
 * measured the same at 300 workspaces (docs/benchmarks.md). And no startup-progress timer: PGlite
 * never disables it, and its alarm every 10 s would hide from the statement-timeout watch
 * (pglite-thread-worker.js) when a statement arms its timeout.
 */
export const PGLITE_START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB', '-c', 'log_startup_progress_interval=0'];

export const openPGlite = (pgdata: string) => PGlite.create({ dataDir: pgdata, extensions: { vector }, startParams: PGLITE_START_PARAMS });

/** What openOrCreateStore needs of an opened store. */
interface Store {
  query(sql: string): Promise<unknown>;
  close(): Promise<void>;
}

const exists = (file: string) => access(file).then(() => true, () => false);

/** Whether `pgdata` holds a store (one whose first start completed). */
export const storeExists = async (pgdata: string) => (await exists(pgdata)) && !(await exists(path.join(pgdata, INITIALISING)));

/**
 * Opens `pgdata`, making it first when there is no store there yet: from the template built with
 * the package when it is complete and from this PGlite version, else with PGlite's own initdb.
 * The caller holds the data-dir lock.
 */
export async function openOrCreateStore<S extends Store = PGlite>(
  pgdata: string,
  onFallback: (reason: string) => void,
  templateDir = pgliteTemplateDir,
  open: (pgdata: string) => Promise<S> = openPGlite as unknown as (pgdata: string) => Promise<S>,
): Promise<S> {
  if (await storeExists(pgdata)) {
    // Stores made from a packed template before its directories were listed lack them.
    const manifest = await readManifest(templateDir);
    if (manifest) await Promise.all(manifest.dirs.map((dir) => mkdir(path.join(pgdata, dir), { recursive: true }).catch(() => undefined)));
    return open(pgdata);
  }
  await rm(pgdata, { recursive: true, force: true });
  const reason = await copyTemplate(pgdata, templateDir);
  if (!reason) {
    const store = await openedFine(pgdata, open);
    if (store) return store;
    onFallback('the store copied from the template did not open');
  } else {
    onFallback(reason);
  }
  await rm(pgdata, { recursive: true, force: true });
  await mkdir(pgdata, { recursive: true });
  await writeFile(path.join(pgdata, INITIALISING), '');
  const store = await open(pgdata);
  await rm(path.join(pgdata, INITIALISING));
  return store;
}

async function openedFine<S extends Store>(pgdata: string, open: (pgdata: string) => Promise<S>): Promise<S | undefined> {
  let store: S | undefined;
  try {
    store = await open(pgdata);
    await store.query('SELECT 1');
    await rm(path.join(pgdata, INITIALISING));
    return store;
  } catch {
    await store?.close().catch(() => undefined);
    return undefined;
  }
}

/**
 * Copies the template into `pgdata` (through `pgdata.partial`, renamed once complete and checked)
 * with the initialising marker. Returns why the template cannot be used, or undefined.
 */
export async function copyTemplate(pgdata: string, templateDir: string): Promise<string | undefined> {
  const manifest = await readManifest(templateDir);
  if (!manifest) return `no PGlite template at ${templateDir}`;
  const installed = installedPGliteVersion();
  if (manifest.pgliteVersion !== installed) {
    return `the template was made by PGlite ${manifest.pgliteVersion}, this is PGlite ${installed}`;
  }
  const partial = `${pgdata}.partial`;
  await rm(partial, { recursive: true, force: true });
  await copyListed(templateDir, partial, manifest);
  const damage = await compareWithManifest(partial, manifest);
  if (damage) {
    await rm(partial, { recursive: true, force: true });
    return `the PGlite template at ${templateDir} is incomplete (${damage})`;
  }
  await writeFile(path.join(partial, INITIALISING), '');
  await rename(partial, pgdata);
  return undefined;
}

/**
 * Copies the manifest's directories and files, many files at a time: `fs.cp` walks and stats the
 * tree one entry after another, three times slower here for the template's thousand small files.
 * A copy-on-write clone where the file system has them, a plain copy elsewhere. A file the
 * template lacks is left out, for the check that follows to name.
 */
async function copyListed(from: string, to: string, manifest: TemplateManifest): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const dir of manifest.dirs) await mkdir(path.join(to, dir), { recursive: true });
  // The manifest too: it says what the store was made from.
  const files = [...Object.keys(manifest.files), TEMPLATE_MANIFEST];
  let next = 0;
  const copier = async () => {
    for (let file = files[next++]; file !== undefined; file = files[next++]) {
      await copyFile(path.join(from, file), path.join(to, file), constants.COPYFILE_FICLONE).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
  };
  await Promise.all(Array.from({ length: 16 }, copier));
}

const readManifest = (templateDir: string) =>
  readFile(path.join(templateDir, TEMPLATE_MANIFEST), 'utf8').then(
    (text) => JSON.parse(text) as TemplateManifest,
    () => undefined,
  );

/** The first difference between a copied store and the template's manifest, if any. */
export async function compareWithManifest(dir: string, manifest: TemplateManifest): Promise<string | undefined> {
  const found = await listTree(dir);
  for (const [file, size] of Object.entries(manifest.files)) {
    if (found.files[file] === undefined) return `${file} is missing`;
    if (found.files[file] !== size) return `${file} has ${found.files[file]} bytes, not ${size}`;
  }
  return undefined;
}

/** Every directory and file (with its size) under `root`, by relative path with `/`. */
export async function listTree(root: string): Promise<{ dirs: string[]; files: Record<string, number> }> {
  const dirs: string[] = [];
  const files: Record<string, number> = {};
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(root, relative), { withFileTypes: true });
    await Promise.all(
      entries.map(async (entry) => {
        const child = relative ? `${relative}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          dirs.push(child);
          await walk(child);
        } else {
          files[child] = (await stat(path.join(root, child))).size;
        }
      }),
    );
  };
  await walk('');
  return { dirs: dirs.sort(), files };
}

let pgliteVersion: string | undefined;

/** The version of the PGlite package this code runs with (its package.json is not exported). */
export function installedPGliteVersion(): string {
  if (pgliteVersion) return pgliteVersion;
  let dir = path.dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  for (;;) {
    try {
      const pkg = createRequire(import.meta.url)(path.join(dir, 'package.json')) as { name?: string; version: string };
      if (pkg.name === '@electric-sql/pglite') return (pgliteVersion = pkg.version);
    } catch {
      // not the package root yet
    }
    const parent = path.dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}
