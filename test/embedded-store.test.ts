import { cp, readdir, readFile, rm, rmdir, truncate, writeFile, access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DamagedStoreError } from '../src/db/embedded/damaged-store.js';
import { PGliteDatabase } from '../src/db/embedded/pglite-database.js';
import { listTree, openOrCreateStore, TEMPLATE_MANIFEST, type TemplateManifest } from '../src/db/embedded/pglite-store.js';
import { ProvisioningEngine } from '../src/engine.js';
import { silentLogger } from '../src/logger.js';
import { pgliteTemplateDir } from '../src/package-info.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { install, planFor, tempDir } from './support/fixtures.js';
import { startServerProcess } from './support/server-process.js';

const gone = (file: string) => expect(access(file)).rejects.toThrow(/ENOENT/);

/** A copy of the built template, to be spoilt by a test. */
async function templateCopy(): Promise<string> {
  const dir = path.join(await tempDir('pgw-tpl-'), 'template');
  await cp(pgliteTemplateDir, dir, { recursive: true });
  return dir;
}

async function opensAndAnswers(pgdata: string, template: string): Promise<string[]> {
  const fallbacks: string[] = [];
  const pglite = await openOrCreateStore(pgdata, (reason) => fallbacks.push(reason), template);
  try {
    expect((await pglite.query<{ ok: number }>('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    // Opened as the server opens it: the default 128 MB would double the time to open.
    expect((await pglite.query<{ shared_buffers: string }>('SHOW shared_buffers')).rows).toEqual([{ shared_buffers: '16MB' }]);
    expect((await pglite.query<{ v: string }>(`SELECT extversion AS v FROM pg_available_extensions a
      LEFT JOIN pg_extension e ON e.extname = a.name WHERE a.name = 'vector'`)).rows).toHaveLength(1);
  } finally {
    await pglite.close();
  }
  await gone(path.join(pgdata, 'PGW_INITIALISING'));
  await gone(`${pgdata}.partial`);
  return fallbacks;
}

describe('making a new embedded store', () => {
  it('copies a small template: one WAL segment of 1 MiB, none set aside for reuse', async () => {
    const manifest = JSON.parse(await readFile(path.join(pgliteTemplateDir, TEMPLATE_MANIFEST), 'utf8')) as TemplateManifest;
    const segments = Object.entries(manifest.files).filter(([file]) => /^pg_wal\/[0-9A-F]{24}$/.test(file));
    expect(segments.map(([, size]) => size)).toEqual([1024 * 1024]);
  });

  it('makes a working store from a template that lost its empty directories, as npm pack leaves it', async () => {
    const template = await templateCopy();
    const manifest = JSON.parse(await readFile(path.join(template, TEMPLATE_MANIFEST), 'utf8')) as TemplateManifest;
    const empty = [];
    for (const dir of [...manifest.dirs].reverse()) {
      if ((await readdir(path.join(template, dir))).length === 0) {
        await rmdir(path.join(template, dir));
        empty.push(dir);
      }
    }
    expect(empty).toContain('pg_notify');
    expect(empty).toContain('pg_wal/archive_status');

    const pgdata = path.join(await tempDir('pgw-store-'), 'pgdata');
    expect(await opensAndAnswers(pgdata, template)).toEqual([]);
    expect((await listTree(pgdata)).dirs).toEqual(expect.arrayContaining(manifest.dirs));
  });

  it('makes the store with initdb when the template is damaged or from another PGlite version', { timeout: 240_000 }, async () => {
    const damaged = await templateCopy();
    await truncate(path.join(damaged, 'global', 'pg_control'), 100);
    const damagedStore = path.join(await tempDir('pgw-store-'), 'pgdata');
    const [reason] = await opensAndAnswers(damagedStore, damaged);
    expect(reason).toMatch(/template at .* is incomplete \(global\/pg_control has 100 bytes, not 8192\)/);

    const foreign = await templateCopy();
    const manifestFile = path.join(foreign, TEMPLATE_MANIFEST);
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as TemplateManifest;
    await writeFile(manifestFile, JSON.stringify({ ...manifest, pgliteVersion: '0.0.1' }));
    const foreignStore = path.join(await tempDir('pgw-store-'), 'pgdata');
    expect(await opensAndAnswers(foreignStore, foreign)).toEqual([
      `the template was made by PGlite 0.0.1, this is PGlite ${manifest.pgliteVersion}`,
    ]);
    // Made by initdb, not copied: the template's manifest is not in it.
    await gone(path.join(foreignStore, TEMPLATE_MANIFEST));
  });

  it('makes a store again whose first initialisation did not finish, never opening it as a store', async () => {
    const dir = await tempDir('pgw-store-');
    await mkdir(path.join(dir, 'pgdata'));
    await writeFile(path.join(dir, 'pgdata', 'PGW_INITIALISING'), '');
    await writeFile(path.join(dir, 'pgdata', 'PG_VERSION'), 'half made');
    const db = await PGliteDatabase.open(dir);
    try {
      expect(await db.query('SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    } finally {
      await db.close();
    }
    await gone(path.join(dir, 'pgdata', 'PGW_INITIALISING'));
  });
});

describe('a damaged embedded store', () => {
  let store: string;
  let registryHeap: string;
  let walSegment: string;

  beforeAll(async () => {
    store = await tempDir('pgw-damage-');
    const db = await PGliteDatabase.open(store);
    try {
      const plan = await planFor([]);
      const report = await install(db, plan);
      await new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger).ensure('client-a');
      const [row] = await db.query<{ file: string }>(`SELECT pg_relation_filepath('project_registry.workspace_config') AS file`);
      registryHeap = row?.file ?? '';
    } finally {
      await db.close();
    }
    // After a clean shutdown the lowest segment holds the checkpoint; higher ones await reuse.
    walSegment = `pg_wal/${(await readdir(path.join(store, 'pgdata', 'pg_wal'))).filter((f) => /^[0-9A-F]{24}$/.test(f)).sort()[0]}`;
  }, 120_000);

  /** A copy of the store with one file cut short. */
  async function damagedCopy(file: string, size = 0): Promise<string> {
    const dir = await tempDir('pgw-damaged-');
    await cp(store, dir, { recursive: true });
    await rm(path.join(dir, 'lock'));
    await truncate(path.join(dir, 'pgdata', file), size);
    return dir;
  }

  const cases = [
    ['pg_control', () => 'global/pg_control'],
    ['a catalog heap (pg_class)', () => 'base/5/1259'],
    ['the WAL segment', () => walSegment],
    ['the registry heap', () => registryHeap],
  ] as const;

  for (const [what, file] of cases) {
    it(`says which data directory is damaged and what to do when ${what} is truncated`, { timeout: 60_000 }, async () => {
      const dir = await damagedCopy(file());
      const failure = await PGliteDatabase.open(dir).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(DamagedStoreError);
      const message = (failure as Error).message;
      expect(message).toContain(`The embedded data directory ${dir} is damaged`);
      expect(message).toContain('Restore it from a backup, or move it aside');
      expect(message).toContain(`mv ${dir} ${dir}.damaged`);
      expect(message).not.toContain('-sASSERTIONS');
    });
  }

  it('never lists a registry it cannot read as empty: every tool gets the damage', { timeout: 60_000 }, async () => {
    const dir = await damagedCopy(registryHeap);
    const engine = new ProvisioningEngine(
      { databaseUrl: undefined, dataDir: dir, extensionDirs: [], disabledExtensions: [], lockTimeoutMs: 60_000 },
      silentLogger,
    );
    try {
      await expect(engine.ready(50_000)).rejects.toThrow(`The embedded data directory ${dir} is damaged`);
    } finally {
      await engine.close();
    }
  });
});

describe('two servers on one embedded data directory', () => {
  const servers: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close().catch(() => undefined)));
  });

  // Issue 11 asked that a second server not stay stuck; the shared store (issue 13) goes further:
  // it works through the first at once, and takes the store over when the first exits.
  it('the second works through the first while it runs, and on its own once it has exited', { timeout: 120_000 }, async () => {
    const dir = await tempDir('pgw-shared-');
    const first = await startServerProcess(['--data-dir', dir], {});
    servers.push(first);
    expect((await first.call('ensure_workspace', { project_id: 'client-a' })).isError).toBe(false);

    const second = await startServerProcess(['--data-dir', dir], {});
    servers.push(second);
    const through = await second.call('ensure_workspace', { project_id: 'client-b' });
    expect(through.isError, through.text).toBe(false);

    await first.close();
    // A call cut off by the hand-over says so and asks for a retry; the next one succeeds.
    let listed = await second.call('list_workspaces', {});
    for (let i = 0; i < 60 && listed.isError; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      listed = await second.call('list_workspaces', {});
    }
    expect(listed.isError, listed.text).toBe(false);
    expect((listed.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id)).toEqual(['client-a', 'client-b']);
  });
});
