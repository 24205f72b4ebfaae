import { execFile, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresDatabase } from '../src/db/postgres/postgres-database.js';
import { dbUrlOf } from '../src/db/embedded/shared-store.js';
import { assertSearchable, pin } from '../src/embeddings/embedding-spaces.js';
import { readPin } from '../src/registry/embedding-space-sql.js';
import { cosine, startEmbeddingStub, stubEmbedding, type EmbeddingStub } from './support/embedding-stub.js';
import { tempDir, writeExtension } from './support/fixtures.js';
import { MAIN, runCli, startServerProcess } from './support/server-process.js';

/* The built CLI (npm run build first), beside a server process owning the embedded store. */

let stub: EmbeddingStub;
let extensionDir: string;
beforeAll(async () => {
  stub = await startEmbeddingStub({ dimensions: 8 });
  extensionDir = await writeExtension(await tempDir(), { id: 'docs', requires: ['vector'] }, {
    'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS docs (id bigint PRIMARY KEY, body text, embedding vector(8));',
  });
});
afterAll(async () => stub?.close());

const BODIES = Array.from({ length: 10 }, (_, i) => `document ${i + 1} about ${['tables', 'indexes', 'vectors', 'roles', 'schemas'][i % 5]}`);
const COLUMN = { projectId: 'alpha', table: 'docs', column: 'embedding' };
const OLD_SPACE = { provider: 'ollama', model: 'stub-embed', dimensions: 8, queryPrefix: '', documentPrefix: 'old: ' } as const;

/**
 * A server process owning a new embedded store, and a socket client of it, with workspace alpha
 * as an ingest in the old space left it: rows with the old space's vectors, and the pin.
 */
async function seededServer() {
  const dir = await tempDir();
  const common = ['--data-dir', dir, '--extensions', extensionDir, '--disable', 'codebase'];
  const server = await startServerProcess(common, {});
  const socket = new PostgresDatabase({ connectionString: dbUrlOf(dir) });
  try {
    expect((await server.call('ensure_workspace', { project_id: 'alpha' })).isError).toBeFalsy();
    const values = BODIES.map((body, i) => `(${i + 1}, '${body}', '${JSON.stringify(stubEmbedding(`old: ${body}`, 8))}')`).join(', ');
    expect((await server.call('execute', { project_id: 'alpha', sql: `INSERT INTO docs VALUES ${values}` })).isError).toBeFalsy();
    await pin(socket, { ...COLUMN, textColumn: 'body' }, OLD_SPACE);
  } catch (error) {
    await socket.close();
    await server.close();
    throw error;
  }
  return { common, server, socket };
}

/** The command's environment for the new space: the stub's OpenAI endpoint, batches of 4, one at a time. */
const newSpaceEnv = (): Record<string, string> => ({
  PATH: process.env['PATH'] ?? '',
  HOME: process.env['HOME'] ?? '/tmp',
  PG_WORKSPACE_EMBEDDINGS: 'openai',
  PG_WORKSPACE_EMBEDDINGS_URL: stub.openaiUrl,
  PG_WORKSPACE_EMBEDDINGS_MODEL: 'stub-embed',
  PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: '8',
  PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX: 'new: ',
  PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '4',
  PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '1',
});

describe('the reembed command', () => {
  it('moves a workspace beside the server serving its embedded store, with progress on stderr, and exits 0', async () => {
    const { common, server, socket } = await seededServer();
    try {
      const env = { ...newSpaceEnv(), PG_WORKSPACE_EMBEDDINGS_API_KEY: 'sk-cli-secret-0123456789' };
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, 'reembed', '--project', 'alpha', ...common], { env });
      expect(stdout).toBe('  alpha docs.embedding: moved (10 rows, 10 embedded by this run)\n');
      expect(stderr).toContain('reembed: moving pinned columns of workspace "alpha" to openai "stub-embed" (8 dimensions, document prefix "new: ")');
      expect(stderr).toContain('reembed: alpha docs.embedding: 10 of 10 rows');
      expect(stderr).not.toContain('sk-cli-secret-0123456789');
      expect(stub.requests).toHaveLength(3);
      expect(stub.requests.every((r) => r.headers.authorization === 'Bearer sk-cli-secret-0123456789')).toBe(true);
      expect(await readPin(socket, COLUMN)).toMatchObject({ provider: 'openai', document_prefix: 'new: ', target: null });
      // The server kept serving, and reads the new vectors.
      const read = await server.call('query', { project_id: 'alpha', sql: 'SELECT body, embedding::text AS v FROM docs ORDER BY id' });
      const rows = (read.data as { rows: Array<[string, string]> }).rows;
      expect(rows.map(([body, v]) => cosine(JSON.parse(v) as number[], stubEmbedding(`new: ${body}`, 8)))).toEqual(rows.map(() => expect.closeTo(1, 5)));
    } finally {
      await socket.close();
      await server.close();
    }
  }, 120_000);

  it('stops at Ctrl-C, dropping the batch in flight (exit 1), and a rerun continues after the last batch written', async () => {
    const { common, server, socket } = await seededServer();
    try {
      const env = newSpaceEnv();
      stub.reset();
      stub.delayMs = 500;
      const child = spawn(process.execPath, [MAIN, 'reembed', '--project', 'alpha', ...common], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // The second batch's request has reached the provider: the first batch is written.
      for (let waited = 0; stub.requests.length < 2; waited += 50) {
        if (waited > 60_000) throw new Error(`the second request never came:\n${stderr}`);
        await sleep(50);
      }
      child.kill('SIGINT');
      expect(await exited).toBe(1);
      expect(stderr).toContain('Interrupted: stopping; the batches written are kept and a rerun continues from them');
      expect(stdout).toBe('  alpha docs.embedding: interrupted at 4 of 10 rows; run the command again to continue\n');
      expect(await readPin(socket, COLUMN)).toMatchObject({ provider: 'ollama', reembed_cursor: '4', reembed_done: '4' });
      // Searching is refused meanwhile, by the server too.
      await expect(assertSearchable(socket, COLUMN, OLD_SPACE)).rejects.toThrow('is being re-embedded');

      stub.reset();
      const rerun = await promisify(execFile)(process.execPath, [MAIN, 'reembed', '--project', 'alpha', ...common], { env });
      expect(rerun.stdout).toBe('  alpha docs.embedding: moved (10 rows, 6 embedded by this run)\n');
      expect(stub.requests.map((r) => (r.body['input'] as string[]).length)).toEqual([4, 2]);
      expect(await readPin(socket, COLUMN)).toMatchObject({ provider: 'openai', target: null });
    } finally {
      await socket.close();
      await server.close();
    }
  }, 120_000);
});

describe('embedding settings on the command line', () => {
  it('stop the server and reembed with exit code 2 and a message naming the setting, the key never echoed', async () => {
    const key = 'sk-never-echo-0123456789';
    const serve = await runCli(['--embeddings', 'ollama', '--embeddings-dimensions', '0'], { PG_WORKSPACE_EMBEDDINGS_API_KEY: key });
    expect(serve).toEqual({
      code: 2,
      stdout: '',
      stderr: 'pg-workspace-mcp: --embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: must be a whole number from 1 to 16000, got "0".\n',
    });
    const reembed = await runCli(['reembed', '--all'], { PG_WORKSPACE_EMBEDDINGS_API_KEY: key });
    expect(reembed.code).toBe(2);
    expect(reembed.stderr).toContain('reembed moves columns to the configured embedding space');
    expect(serve.stderr + reembed.stderr).not.toContain(key);
  }, 30_000);
});
