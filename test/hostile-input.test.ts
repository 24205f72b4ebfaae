import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/database.js';
import { silentLogger } from '../src/logger.js';
import { PROJECT_ID_MAX_LENGTH, PROJECT_ID_PATTERN, validateProjectId, WorkspaceIdError } from '../src/workspaces/project-id.js';
import { WorkspaceManager } from '../src/workspaces/workspace-manager.js';
import { install, pgliteBackend, planFor, recording, type Backend } from './support/fixtures.js';
import { connectInProcess } from './support/mcp.js';

/** Strings built to break naive SQL: quotes, comments, look-alikes, case, hyphen games, size. */
const hostile = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom(
    "a'; DROP SCHEMA project_registry CASCADE; --",
    'a"; DROP TABLE x; --',
    'robert"); DROP TABLE students;--',
    '$$; SELECT pg_sleep(10); $$',
    'ａｂｃ', // full-width look-alikes
    'аbc', // Cyrillic а
    'ABC',
    'Client-A',
    '-lead',
    'trail-',
    'double--hyphen',
    '',
    ' ',
    'a'.repeat(PROJECT_ID_MAX_LENGTH + 1),
    'a\u0000b',
    'a\nb',
  ),
  fc.string({ minLength: 56, maxLength: 300 }),
);

describe('hostile input', () => {
  let backend: Backend;
  let db: Database;
  let manager: WorkspaceManager;
  let calls: string[];

  beforeAll(async () => {
    backend = await pgliteBackend();
    const real = await backend.fresh();
    const plan = await planFor([]);
    const report = await install(real, plan);
    const recorded = recording(real);
    db = recorded.db;
    calls = recorded.calls;
    manager = new WorkspaceManager(db, plan, report.searchPathSchemas, silentLogger);
  }, 60_000);
  afterAll(async () => backend.cleanup());

  it('accepts exactly the documented project ids and maps them to distinct schema names', () => {
    fc.assert(
      fc.property(hostile, (id) => {
        const valid = PROJECT_ID_PATTERN.test(id) && id.length <= PROJECT_ID_MAX_LENGTH;
        if (valid) expect(validateProjectId(id)).toBe(id);
        else expect(() => validateProjectId(id)).toThrow(WorkspaceIdError);
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects every invalid project id before any SQL, with the id rules', async () => {
    await fc.assert(
      fc.asyncProperty(hostile, async (id) => {
        fc.pre(!(PROJECT_ID_PATTERN.test(id) && id.length <= PROJECT_ID_MAX_LENGTH));
        calls.length = 0;
        await expect(manager.ensure(id)).rejects.toThrow(/lower-case ASCII letters and digits/);
        expect(calls).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('passes table and column names only as parameters, never in SQL text', async () => {
    // The SQL sent for benign names, refused (not a workspace or extension table) and answered:
    // hostile names must not change it.
    calls.length = 0;
    await expect(manager.validateColumns({ table: 'benign_schema.benign_table', columns: ['benign_column'] })).rejects.toThrow(RangeError);
    await manager.validateColumns({ table: 'project_registry.workspace_config', columns: ['benign_column'] });
    const statements = new Set(calls);
    expect(statements.size).toBeGreaterThan(0);

    await fc.assert(
      fc.asyncProperty(hostile, hostile, async (table, column) => {
        calls.length = 0;
        try {
          const result = await manager.validateColumns({ table, columns: [column] });
          expect(result.tableExists).toBe(false);
        } catch (error) {
          expect(error).toBeInstanceOf(RangeError); // empty, too long, NUL, too many dots, not answerable
          expect((error as Error).message.length).toBeGreaterThan(20);
        }
        for (const sql of calls) expect(statements).toContain(sql);
      }),
      { numRuns: 300 },
    );
    // Nothing was dropped along the way.
    expect(await db.query(`SELECT to_regclass('project_registry.workspace_config') IS NOT NULL AS ok`)).toEqual([{ ok: true }]);
  });

  it('describe_workspace and search_vectors send no SQL text built from names the catalog does not know', async () => {
    await manager.ensure('hostile-names');
    const vector = new Array<number>(768).fill(0.5);
    const attempts = (name: string) => [
      manager.describe('hostile-names', name),
      manager.searchVectors({ projectId: 'hostile-names', table: name, column: 'embedding', vector }),
      manager.searchVectors({ projectId: 'hostile-names', table: 'chunks', column: name, vector }),
      manager.searchVectors({ projectId: 'hostile-names', table: 'chunks', column: 'embedding', vector, filter: { [name]: 1 } }),
      manager.searchVectors({ projectId: 'hostile-names', table: 'chunks', column: 'embedding', vector, columns: [name] }),
    ];
    calls.length = 0;
    for (const attempt of attempts('benign_name')) await expect(attempt).rejects.toThrow(/does not exist|not a column/);
    const statements = new Set(calls);
    expect(statements).toContain('BEGIN READ ONLY');

    await fc.assert(
      fc.asyncProperty(hostile, async (name) => {
        fc.pre(!['chunks', 'files', 'repositories', 'id', 'file_id', 'content', 'start_line', 'end_line', 'embedding', 'created_at'].includes(name));
        calls.length = 0;
        for (const attempt of attempts(name)) {
          const error = await attempt.then(() => undefined, (e: unknown) => e);
          expect(error).toBeInstanceOf(Error);
          expect((error as Error).message).toMatch(/does not exist|not a column|not a PostgreSQL identifier|must not be empty/);
        }
        for (const sql of calls) expect(statements).toContain(sql);
      }),
      { numRuns: 150 },
    );
    expect((await manager.describe('hostile-names')).map((t) => t.name)).toEqual(['chunks', 'files', 'repositories']);
  });
});

describe('hostile input over MCP', () => {
  it('answers 1 MB arguments and injection attempts with clear errors and keeps serving', async () => {
    const { client, close } = await connectInProcess();
    try {
      const huge = 'x'.repeat(1024 * 1024);
      for (const args of [
        { name: 'ensure_workspace', arguments: { project_id: huge } },
        { name: 'ensure_workspace', arguments: { project_id: "x'); DROP SCHEMA project_registry CASCADE; --" } },
        { name: 'ensure_workspace', arguments: { project_id: 42 } },
        { name: 'ensure_workspace', arguments: {} },
        { name: 'validate_columns', arguments: { table: huge, columns: ['id'] } },
        { name: 'validate_columns', arguments: { table: 't', columns: [huge] } },
        { name: 'validate_columns', arguments: { table: 't', columns: [] } },
        { name: 'list_workspaces', arguments: { prefix: "'; --" } },
        { name: 'list_workspaces', arguments: { cursor: huge.slice(0, 150) } },
      ]) {
        const result = await client.callTool(args);
        expect(result.isError, JSON.stringify(args).slice(0, 100)).toBe(true);
        const text = (result.content as { text: string }[])[0]?.text ?? '';
        expect(text.length).toBeGreaterThan(20);
        expect(text.length).toBeLessThan(5000); // a 1 MB input is not echoed back
      }
      const fine = await client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'survivor' } });
      expect(fine.isError).toBeFalsy();
    } finally {
      await close();
    }
  }, 60_000);
});
