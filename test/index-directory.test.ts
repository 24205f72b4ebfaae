import { execFile } from 'node:child_process';
import { constants, mkdir, open, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/fixtures.js';
import { startEmbeddingStub } from './support/embedding-stub.js';
import { callTool, connectInProcess, embeddingsAt } from './support/mcp.js';
import { createVectorDatabase, startPgvectorCluster, type PgCluster } from './support/pg-cluster.js';
import { BACKEND_KINDS } from './support/backend-per-kind.js';
import type { Queryable } from '../src/db/database.js';
import { lockWorkspace } from '../src/registry/registry-sql.js';
import { dropWorkspace } from '../src/workspaces/workspace-lifecycle.js';

/*
 * index_directory on a generated repository: .gitignore, binaries, an oversized file and
 * symlinks in and out of the root; roots from the MCP client; incremental re-runs; a run
 * stopped by a restart leaves whole files only and the next run resumes.
 */

let cluster: PgCluster | null = null;
beforeAll(async () => {
  cluster = await startPgvectorCluster('index_directory');
}, 120_000);
afterAll(async () => cluster?.destroy());

const tsFile = (name: string, lines = 3) =>
  `export function ${name}(input: string): string {\n${Array.from({ length: lines }, (_, i) => `  const step${i} = input.trim(); // ${name} step ${i}`).join('\n')}\n  return input;\n}\n`;

/** A repository with everything index_directory must leave out, and a directory outside it. */
async function makeRepository(): Promise<{ root: string; outside: string }> {
  const base = await tempDir('pgw-repo-');
  const root = path.join(base, 'repo');
  const outside = path.join(base, 'outside');
  await mkdir(path.join(root, 'src', 'nested'), { recursive: true });
  await mkdir(path.join(root, 'build'), { recursive: true });
  await mkdir(path.join(root, 'docs'), { recursive: true });
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(root, '.gitignore'), 'build/\n*.log\n');
  await writeFile(path.join(root, 'src', 'nested', '.gitignore'), 'generated.ts\n');
  await writeFile(path.join(root, 'src', 'parser.ts'), tsFile('parseConfiguration'));
  await writeFile(path.join(root, 'src', 'nested', 'walker.ts'), tsFile('walkTheTree'));
  await writeFile(path.join(root, 'src', 'nested', 'generated.ts'), tsFile('generatedThing'));
  await writeFile(path.join(root, 'src', 'util.py'), 'def normalize_whitespace(text):\n    return " ".join(text.split())\n');
  await writeFile(path.join(root, 'docs', 'guide.md'), '# Guide\n\nRun the reticulator before the splines.\n');
  await writeFile(path.join(root, 'build', 'bundle.js'), 'function bundledOutput() {}\n');
  await writeFile(path.join(root, 'debug.log'), 'log line mentioning parseConfiguration\n');
  await writeFile(path.join(root, 'logo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0x1a, 0x0a]));
  await writeFile(path.join(root, 'huge.txt'), 'x'.repeat(300_000));
  await writeFile(path.join(outside, 'secret.ts'), tsFile('outsideSecret'));
  await symlink(outside, path.join(root, 'escape'));
  await symlink(path.join(outside, 'secret.ts'), path.join(root, 'secret-link.ts'));
  await symlink(path.join(root, 'src', 'parser.ts'), path.join(root, 'parser-link.ts'));
  return { root, outside };
}

type Run = Record<string, unknown> & { skipped: Record<string, string[]> };

for (const kind of BACKEND_KINDS) {
  describe(`index_directory on ${kind}`, () => {
    let repo: { root: string; outside: string };
    let url: string | undefined;
    let dataDir: string;
    beforeAll(async () => {
      repo = await makeRepository();
      dataDir = await tempDir('pgw-index-store-');
      if (kind === 'postgres' && cluster) url = await createVectorDatabase(cluster, 'index');
    }, 120_000);
    afterAll(async () => {
      await rm(path.dirname(repo.root), { recursive: true, force: true });
      await rm(dataDir, { recursive: true, force: true });
    });
    const connect = (options: { roots?: string[]; allowedRoots?: string[] } = {}) =>
      connectInProcess({ ...(url ? { databaseUrl: url } : { dataDir }), ...options });

    it('indexes what .gitignore keeps, inside the client roots, reporting progress; re-runs only touch changes', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const mcp = await connect({ roots: [repo.root] });
      try {
        const progress: Array<{ progress: number; total?: number | undefined }> = [];
        const first = (await mcp.client.callTool({ name: 'index_directory', arguments: { project_id: 'repo', path: repo.root, max_file_bytes: 100_000 } }, undefined, {
          onprogress: (p) => progress.push(p),
        })) as CallToolResult;
        expect(first.isError, JSON.stringify(first.content)).toBeFalsy();
        const run = first.structuredContent as Run;
        expect(run).toMatchObject({ state: 'done', phase: 'finished', files_total: 7, files_changed: 7, files_unchanged: 0, files_removed: 0, embedded: 0, error: null });
        expect(run.skipped).toEqual({ binary: ['logo.png'], oversized: ['huge.txt'], outside_root: ['escape', 'secret-link.ts'], unreadable: [] });
        expect(progress.length).toBeGreaterThan(0);
        expect(progress.at(-1)).toMatchObject({ progress: 7, total: 7 });

        const run2 = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        const files = await run2('query', { project_id: 'repo', sql: 'SELECT f.path, f.language FROM files f ORDER BY 1' });
        // .gitignore files are text of the repository like any other.
        expect(files.data['rows']).toEqual([
          ['.gitignore', null],
          ['docs/guide.md', 'markdown'],
          ['parser-link.ts', 'typescript'],
          ['src/nested/.gitignore', null],
          ['src/nested/walker.ts', 'typescript'],
          ['src/parser.ts', 'typescript'],
          ['src/util.py', 'python'],
        ]);
        const hit = await run2('search', { project_id: 'repo', query: 'walkTheTree', k: 1 });
        expect((hit.data['results'] as Array<{ source: unknown }>)[0]?.source).toMatchObject({ path: 'src/nested/walker.ts', start_line: 1, end_line: 6, repository: repo.root });
        for (const absent of ['outsideSecret', 'bundledOutput', 'generatedThing']) {
          const none = await run2('search', { project_id: 'repo', query: absent });
          expect(none.data['results'], absent).toEqual([]);
        }

        // Change one file, delete one, add one.
        await writeFile(path.join(repo.root, 'src', 'parser.ts'), tsFile('parseConfiguration', 5));
        await unlink(path.join(repo.root, 'src', 'util.py'));
        await writeFile(path.join(repo.root, 'src', 'added.ts'), tsFile('freshlyAdded'));
        const second = await run2('index_directory', { project_id: 'repo', path: repo.root, max_file_bytes: 100_000 });
        expect(second.data).toMatchObject({ state: 'running' });
        const status = await waitForRun(run2, 'repo', second.data['job_id'] as string);
        // parser-link.ts follows parser.ts: both changed.
        expect(status).toMatchObject({ state: 'done', files_total: 7, files_changed: 3, files_unchanged: 4, files_removed: 1 });
        const gone = await run2('search', { project_id: 'repo', query: 'normalize_whitespace' });
        expect(gone.data['results']).toEqual([]);
        const longer = await run2('search', { project_id: 'repo', query: 'parseConfiguration', filter: { path: 'src/parser.ts' } });
        expect((longer.data['results'] as Array<{ source: { end_line: number } }>)[0]?.source.end_line).toBe(8);
        const summary = await run2('index_status', { project_id: 'repo' });
        expect(summary.data['repositories']).toEqual([{ path: repo.root, indexed_at: expect.any(String), files: 7, chunks: 7, chunks_without_embedding: 7 }]);
        expect((summary.data['runs'] as unknown[]).length).toBe(2);
      } finally {
        await mcp.close();
      }
    }, 120_000);

    it('index_status, search and search_vectors on an unknown id say it does not exist and make nothing (issue 23 follow-up)', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const mcp = await connect();
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        const vector = Array.from({ length: 768 }, () => 0.1);
        const reads: [string, Record<string, unknown>][] = [
          ['index_status', {}],
          ['index_status', { job_id: '00000000-0000-4000-8000-000000000000' }],
          ['search', { query: 'anything' }],
          ['search_vectors', { table: 'chunks', column: 'embedding', vector }],
        ];
        for (const [name, args] of reads) {
          const result = await run(name, { project_id: 'ghost', ...args });
          expect(result.isError, `${name}: ${result.text}`).toBe(true);
          // As describe_workspace and workspace_status answer it.
          expect(result.text, name).toBe('Workspace "ghost" does not exist. Create it first with ensure_workspace.');
        }
        // No workspace, no schema, no role was made (the probe's own role is not the ghost's).
        expect((await run('list_workspaces', { prefix: 'ghost' })).data['workspaces']).toEqual([]);
        const made = await run('query', {
          project_id: 'ghost-probe',
          sql: `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'project_ghost'), (SELECT count(*)::int FROM pg_roles WHERE rolname LIKE '%ghost')`,
        });
        expect(made.data['rows']).toEqual([[0, 0]]);
        // A registered workspace whose schema was dropped by hand holds nothing, and is not made again by a status call.
        expect((await run('ensure_workspace', { project_id: 'hollow' })).isError).toBe(false);
        await (await mcp.engine.ready(60_000)).db.exec('DROP SCHEMA project_hollow CASCADE');
        const hollow = await run('index_status', { project_id: 'hollow' });
        expect(hollow.isError, hollow.text).toBe(false);
        expect(hollow.data).toEqual({ runs: [], repositories: [] });
        const schema = await run('query', { project_id: 'ghost-probe', sql: `SELECT count(*)::int FROM pg_namespace WHERE nspname = 'project_hollow'` });
        expect(schema.data['rows']).toEqual([[0]]);
      } finally {
        await mcp.close();
      }
    }, 120_000);

    it('index_status makes nothing when the workspace is dropped between its existence check and its read (issue 24 follow-up)', async (ctx) => {
      // Another session holds what the read waits for after its existence check (the workspace's
      // lock; the registry generation, which a cached workspace's ensure reads), so a drop commits
      // in between, on cue. The embedded store has one session, so none can hold a lock: PostgreSQL only.
      if (kind !== 'postgres' || !url) return ctx.skip();
      const mcp = await connect();
      const pg = await import('pg');
      const admin = new pg.default.Client({ connectionString: url });
      await admin.connect();
      const tx = {
        query: async (sql: string, params?: readonly unknown[]) => (await admin.query(sql, params as unknown[])).rows,
        exec: async (sql: string) => void (await admin.query(sql)),
      } as Queryable;
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        expect((await run('ensure_workspace', { project_id: 'dropped-midway' })).isError).toBe(false);
        await admin.query('BEGIN');
        await lockWorkspace(tx, 'dropped-midway');
        await admin.query('LOCK TABLE project_registry.registry_generation IN ACCESS EXCLUSIVE MODE');
        const status = run('index_status', { project_id: 'dropped-midway' });
        // It has passed its existence check once it waits for one of them.
        await expect
          .poll(async () => (await admin.query(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND (locktype = 'advisory' OR relation = 'project_registry.registry_generation'::regclass)`)).rows[0].n, { timeout: 30_000 })
          .toBe(1);
        // Another process's drop-workspace (its code), committed now.
        expect(await dropWorkspace(tx, 'dropped-midway', 'project_dropped_midway', { lockTimeoutMs: 10_000, citus: false })).toMatchObject({ dropped: true });
        await admin.query('COMMIT');
        const result = await status;
        const left = await admin.query(
          `SELECT (SELECT count(*)::int FROM project_registry.workspace_config WHERE project_id = 'dropped-midway') AS registered,
                  (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'project_dropped_midway') AS schemas`,
        );
        expect(left.rows, result.text).toEqual([{ registered: 0, schemas: 0 }]);
        expect(result.isError).toBe(true);
        expect(result.text).toBe('Workspace "dropped-midway" does not exist. Create it first with ensure_workspace.');
      } finally {
        await admin.end();
        await mcp.close();
      }
    }, 120_000);

    it('with a provider, a re-run sends embedding requests for the changed file only', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const stub = await startEmbeddingStub();
      const sentTexts = () => stub.requests.flatMap((r) => r.body['input'] as string[]);
      const dir = path.join(path.dirname(repo.root), 'embedded');
      await mkdir(dir, { recursive: true });
      await Promise.all(Array.from({ length: 20 }, (_, i) => writeFile(path.join(dir, `mod${i}.ts`), tsFile(`module${i}Entry`, 60))));
      const mcp = await connectInProcess({ ...(url ? { databaseUrl: url } : { dataDir }), allowedRoots: [dir], embeddings: embeddingsAt(stub.openaiUrl) });
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        const first = await run('index_directory', { project_id: 'embedded', path: dir });
        const done = await waitForRun(run, 'embedded', first.data['job_id'] as string);
        const chunks = await run('query', { project_id: 'embedded', sql: 'SELECT count(*)::int, count(embedding)::int, count(DISTINCT content_hash)::int FROM chunks' });
        const [total, embedded, distinct] = (chunks.data['rows'] as number[][])[0] ?? [];
        expect(total).toBeGreaterThan(20);
        expect(embedded).toBe(total);
        expect(done).toMatchObject({ state: 'done', files_changed: 20, embedded: distinct });
        expect(sentTexts().length).toBe(distinct);

        await writeFile(path.join(dir, 'mod7.ts'), tsFile('module7Entry', 60).replace('step59', 'stepChanged'));
        const before = sentTexts().length;
        const second = await run('index_directory', { project_id: 'embedded', path: dir });
        const again = await waitForRun(run, 'embedded', second.data['job_id'] as string);
        const sent = sentTexts().slice(before);
        expect(again).toMatchObject({ state: 'done', files_changed: 1, files_unchanged: 19, embedded: sent.length });
        // Only the changed chunk of mod7.ts (the last): the file's other chunks were stored already.
        expect(sent).toHaveLength(1);
        expect(sent[0]).toContain('stepChanged');
        const hit = await run('search', { project_id: 'embedded', query: 'stepChanged module7Entry', k: 1 });
        expect(hit.data).toMatchObject({ mode: 'hybrid' });
        expect((hit.data['results'] as Array<{ source: { path: string } }>)[0]?.source.path).toBe('mod7.ts');
      } finally {
        await mcp.close();
        await stub.close();
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);

    it("embeds the next batch of files while the one before is written, and leaves what that one embeds to it", async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const stub = await startEmbeddingStub();
      // Long enough that the next batch's files are read, and its reads done, before this batch's write starts.
      stub.delayMs = 300;
      const dir = path.join(path.dirname(repo.root), 'pipelined');
      await mkdir(dir, { recursive: true });
      // Three batches of 32 one-chunk files; the third's texts are the second's.
      const text = (i: number) => tsFile(`pipelined${i < 64 ? i : i - 32}`, 1);
      await Promise.all(Array.from({ length: 96 }, (_, i) => writeFile(path.join(dir, `f${String(i).padStart(3, '0')}.ts`), text(i))));
      const mcp = await connectInProcess({ ...(url ? { databaseUrl: url } : { dataDir }), allowedRoots: [dir], embeddings: embeddingsAt(stub.openaiUrl) });
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        await run('ensure_workspace', { project_id: 'pipelined' });
        await run('execute', { project_id: 'pipelined', sql: 'CREATE TABLE chunk_writes (started float8, ended float8)' });
        // Each write of chunks takes 0.4 s more, and says when it ran.
        await run('execute', {
          project_id: 'pipelined',
          sql: `CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $f$
            DECLARE t0 float8 := extract(epoch FROM clock_timestamp()) * 1000;
            BEGIN
              PERFORM pg_sleep(0.4);
              INSERT INTO chunk_writes VALUES (t0, extract(epoch FROM clock_timestamp()) * 1000);
              RETURN NULL;
            END $f$`,
        });
        await run('execute', { project_id: 'pipelined', sql: 'CREATE TRIGGER slow_write BEFORE INSERT ON chunks FOR EACH STATEMENT EXECUTE FUNCTION slow_write()' });
        const started = await run('index_directory', { project_id: 'pipelined', path: dir });
        expect(await waitForRun(run, 'pipelined', started.data['job_id'] as string)).toMatchObject({ state: 'done', files_changed: 96, files_done: 96, embedded: 64 });
        const writes = (await run('query', { project_id: 'pipelined', sql: 'SELECT started, ended FROM chunk_writes ORDER BY started' })).data['rows'] as number[][];
        expect(writes).toHaveLength(3);
        // The second batch's request came while the first was being written; the third's texts were the second's, embedded once.
        expect(stub.requests).toHaveLength(2);
        expect(stub.requests[1]?.at).toBeLessThan(writes[0]?.[1] as number);
        const chunks = await run('query', { project_id: 'pipelined', sql: 'SELECT count(*)::int, count(embedding)::int FROM chunks' });
        expect(chunks.data['rows']).toEqual([[96, 96]]);
      } finally {
        await mcp.close();
        await stub.close();
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);

    it("a batch the agent's trigger refuses fails the run with the trigger's error: the batch after it, already embedding, writes nothing; the next run stores the rest", async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const stub = await startEmbeddingStub();
      const dir = path.join(path.dirname(repo.root), 'refused');
      await mkdir(dir, { recursive: true });
      // Three batches of 32 one-chunk files; the second holds the poison.
      await Promise.all(
        Array.from({ length: 96 }, (_, i) => writeFile(path.join(dir, `f${String(i).padStart(3, '0')}.ts`), tsFile(i === 40 ? 'poisonPill' : `refused${i}`, 1))),
      );
      const mcp = await connectInProcess({ ...(url ? { databaseUrl: url } : { dataDir }), allowedRoots: [dir], embeddings: embeddingsAt(stub.openaiUrl) });
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        await run('ensure_workspace', { project_id: 'refused' });
        await run('execute', {
          project_id: 'refused',
          sql: `CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN IF NEW.content LIKE '%poisonPill%' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $f$`,
        });
        await run('execute', { project_id: 'refused', sql: 'CREATE TRIGGER refuse_poison BEFORE INSERT ON chunks FOR EACH ROW EXECUTE FUNCTION refuse_poison()' });
        const first = await run('index_directory', { project_id: 'refused', path: dir });
        expect(await waitForRun(run, 'refused', first.data['job_id'] as string)).toMatchObject({ state: 'failed', error: expect.stringContaining('poison refused') });
        const stored = await run('query', { project_id: 'refused', sql: 'SELECT min(f.path), max(f.path), count(*)::int, count(c.id)::int FROM files f LEFT JOIN chunks c ON c.file_id = f.id' });
        expect(stored.data['rows']).toEqual([['f000.ts', 'f031.ts', 32, 32]]);

        await run('execute', { project_id: 'refused', sql: 'DROP TRIGGER refuse_poison ON chunks' });
        const second = await run('index_directory', { project_id: 'refused', path: dir });
        expect(await waitForRun(run, 'refused', second.data['job_id'] as string)).toMatchObject({ state: 'done', files_unchanged: 32, files_changed: 64 });
        const all = await run('query', { project_id: 'refused', sql: 'SELECT count(*)::int, count(embedding)::int FROM chunks' });
        expect(all.data['rows']).toEqual([[96, 96]]);
      } finally {
        await mcp.close();
        await stub.close();
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);

    it('refuses paths outside the roots, and directories with no roots at all', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const withRoots = await connect({ roots: [path.join(repo.root, 'src')] });
      try {
        const call = (args: Record<string, unknown>) => callTool(withRoots.client, withRoots.tools, 'index_directory', { project_id: 'repo', ...args });
        expect((await call({ path: repo.root })).text).toMatch(/outside the roots this client shared/);
        expect((await call({ path: path.join(repo.root, 'escape') })).text).toMatch(/outside the roots/);
        expect((await call({ path: 'src' })).text).toMatch(/must be absolute/);
        expect((await call({ path: path.join(repo.root, 'nope') })).text).toMatch(/Cannot read.*ENOENT/);
      } finally {
        await withRoots.close();
      }
      const noRoots = await connect();
      try {
        const refused = await callTool(noRoots.client, noRoots.tools, 'index_directory', { project_id: 'repo', path: repo.root });
        expect(refused.text).toMatch(/no MCP roots.*--allow-root/);
      } finally {
        await noRoots.close();
      }
      const serverRoots = await connect({ allowedRoots: [repo.outside] });
      try {
        const refused = await callTool(serverRoots.client, serverRoots.tools, 'index_directory', { project_id: 'repo', path: repo.root });
        expect(refused.text).toMatch(/outside the directories this server allows \(--allow-root/);
      } finally {
        await serverRoots.close();
      }
    }, 120_000);

    it('reads only what the walk vetted: a file swapped after the walk for a link out, a FIFO or a bigger file is skipped, not read', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      // The agent writes in the directory it indexes while the run waits for the provider (issue 27, red team round 3).
      const stub = await startEmbeddingStub({ dimensions: 8 });
      const base = path.join(path.dirname(repo.root), 'raced');
      const dir = path.join(base, 'repo');
      const secret = path.join(base, 'outside-secret.txt');
      await mkdir(dir, { recursive: true });
      await writeFile(secret, 'hunter2 is the outside password\n');
      // Two batches of 32 before them: the second is read while the first is embedded, then the run waits for the first.
      await Promise.all(Array.from({ length: 64 }, (_, i) => writeFile(path.join(dir, `a${String(i).padStart(2, '0')}.ts`), tsFile(`early${i}`))));
      for (const late of ['b-link.txt', 'c-grown.txt', 'd-fifo.txt']) await writeFile(path.join(dir, late), 'plain text\n');
      const mcp = await connectInProcess({ ...(url ? { databaseUrl: url } : { dataDir }), allowedRoots: [dir], embeddings: embeddingsAt(stub.openaiUrl) });
      const fifo = path.join(dir, 'd-fifo.txt');
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        stub.fail({ delayMs: 1500 });
        const started = await run('index_directory', { project_id: 'raced', path: dir, max_file_bytes: 100_000 });
        expect(started.isError, started.text).toBe(false);
        // The first 32 files went to the provider (for 1.5 s): the walk is over and the last three are not read yet.
        while (stub.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
        const swap = async (name: string, make: (tmp: string) => Promise<unknown>) => {
          const tmp = path.join(base, `${name}.tmp`);
          await make(tmp);
          await rename(tmp, path.join(dir, name));
        };
        await swap('b-link.txt', (tmp) => symlink(secret, tmp));
        await swap('c-grown.txt', (tmp) => writeFile(tmp, 'grown '.repeat(40_000)));
        await swap('d-fifo.txt', (tmp) => promisify(execFile)('mkfifo', [tmp]));
        const done = await waitForRun(run, 'raced', started.data['job_id'] as string, 30_000);
        expect(done).toMatchObject({ state: 'done', files_total: 67, files_changed: 64 });
        expect(done.skipped).toEqual({ binary: [], oversized: ['c-grown.txt'], outside_root: ['b-link.txt'], unreadable: ['d-fifo.txt'] });
        const stored = await run('query', { project_id: 'raced', sql: "SELECT count(*)::int FROM chunks WHERE content LIKE '%hunter2%' OR content LIKE '%grown%'" });
        expect(stored.data['rows']).toEqual([[0]]);
      } finally {
        // On a server that opened the FIFO for reading, a writer lets that read end.
        await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).then((h) => h.close()).catch(() => undefined);
        await mcp.close();
        await stub.close();
        await rm(base, { recursive: true, force: true });
      }
    }, 120_000);

    it('a .gitignore that is a FIFO or a link to /dev/zero neither holds the walk nor fills memory', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const base = path.join(path.dirname(repo.root), 'odd-ignores');
      await mkdir(path.join(base, 'fifo'), { recursive: true });
      await mkdir(path.join(base, 'zero'), { recursive: true });
      await writeFile(path.join(base, 'kept.ts'), tsFile('keptAround'));
      await promisify(execFile)('mkfifo', [path.join(base, 'fifo', '.gitignore')]);
      await symlink('/dev/zero', path.join(base, 'zero', '.gitignore'));
      const mcp = await connect({ allowedRoots: [base] });
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        const started = await run('index_directory', { project_id: 'odd-ignores', path: base });
        const done = await waitForRun(run, 'odd-ignores', started.data['job_id'] as string, 30_000);
        expect(done).toMatchObject({ state: 'done', files_total: 1, files_changed: 1 });
      } finally {
        await open(path.join(base, 'fifo', '.gitignore'), constants.O_WRONLY | constants.O_NONBLOCK).then((h) => h.close()).catch(() => undefined);
        await mcp.close();
        await rm(base, { recursive: true, force: true });
      }
    }, 120_000);

    it('a .gitignore whose ** patterns would backtrack for minutes on a deep path stops the run instead of the server', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      // Issue 27, red team round 3: `ignore` matches with regular expressions on the server's one thread.
      const base = path.join(path.dirname(repo.root), 'deep-patterns');
      const deep = path.join(base, ...Array.from({ length: 44 }, () => 'a'));
      await mkdir(deep, { recursive: true });
      await writeFile(path.join(deep, 'c.ts'), tsFile('deepDown'));
      await writeFile(path.join(base, '.gitignore'), `${Array.from({ length: 7 }, () => '**/a').join('/')}/**/b\n`);
      const mcp = await connect({ allowedRoots: [base] });
      try {
        const run = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
        const started = await run('index_directory', { project_id: 'deep-patterns', path: base });
        const done = await waitForRun(run, 'deep-patterns', started.data['job_id'] as string, 30_000);
        expect(done).toMatchObject({ state: 'failed', error: expect.stringMatching(/patterns with several \*\* .* would take too long to match a path \d+ directories deep/) });
      } finally {
        await mcp.close();
        await rm(base, { recursive: true, force: true });
      }
    }, 120_000);

    it('a restart mid-run leaves whole files only, and the next run goes on from there', async (ctx) => {
      if (kind === 'postgres' && !url) ctx.skip();
      const big = path.join(path.dirname(repo.root), 'big');
      await mkdir(big, { recursive: true });
      const FILES = 200;
      await Promise.all(Array.from({ length: FILES }, (_, i) => writeFile(path.join(big, `file${String(i).padStart(3, '0')}.ts`), tsFile(`function${i}`, 40))));
      const first = await connect({ allowedRoots: [big] });
      let stoppedAt: Run;
      try {
        const started = await callTool(first.client, first.tools, 'index_directory', { project_id: 'restart', path: big });
        expect(started.isError, started.text).toBe(false);
        // Wait for some files to be written, then shut the server down mid-run.
        for (;;) {
          const s = await callTool(first.client, first.tools, 'index_status', { project_id: 'restart' });
          const [run] = s.data['runs'] as Run[];
          if ((run?.['files_done'] as number) > 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await first.close();
      }
      const second = await connect({ allowedRoots: [big] });
      try {
        const run2 = (name: string, args: Record<string, unknown>) => callTool(second.client, second.tools, name, args);
        // Every stored file has all of its chunks: the same count a whole write gives (each file here chunks alike).
        const stored = await run2('query', {
          project_id: 'restart',
          sql: 'SELECT count(*)::int AS files, count(DISTINCT n)::int AS shapes, min(n)::int AS n FROM (SELECT f.id, count(c.id) AS n FROM files f LEFT JOIN chunks c ON c.file_id = f.id GROUP BY f.id) s',
        });
        const [files, shapes, perFile] = (stored.data['rows'] as number[][])[0] ?? [];
        expect(files).toBeGreaterThan(0);
        expect(files).toBeLessThan(FILES);
        expect(shapes).toBe(1);
        expect(perFile).toBeGreaterThan(1);
        const resumed = await run2('index_directory', { project_id: 'restart', path: big });
        stoppedAt = await waitForRun(run2, 'restart', resumed.data['job_id'] as string);
        expect(stoppedAt).toMatchObject({ state: 'done', files_total: FILES, files_unchanged: files, files_changed: FILES - (files ?? 0), files_removed: 0 });
        const all = await run2('query', { project_id: 'restart', sql: 'SELECT count(*)::int FROM files' });
        expect(all.data['rows']).toEqual([[FILES]]);
      } finally {
        await second.close();
        await rm(big, { recursive: true, force: true });
      }
    }, 240_000);
  });
}

async function waitForRun(
  run: (name: string, args: Record<string, unknown>) => Promise<{ data: Record<string, unknown> }>,
  projectId: string,
  jobId: string,
  withinMs = Number.POSITIVE_INFINITY,
): Promise<Run> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`run ${jobId} still running after ${withinMs} ms`);
    const { data } = await run('index_status', { project_id: projectId, job_id: jobId });
    const [status] = data['runs'] as Run[];
    if (status && status['state'] !== 'running') return status;
    await new Promise((r) => setTimeout(r, 50));
  }
}
