import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOOL_NAMES, type ToolName } from '../src/mcp/tool-registry.js';
import { tempDir, writeExtension } from './support/fixtures.js';
import { callTool, connectInProcess as connect } from './support/mcp.js';

describe('MCP server in process', () => {
  let mcp: Awaited<ReturnType<typeof connect>>;
  let tools: Tool[];
  const call = (name: string, args: Record<string, unknown>) => callTool(mcp.client, tools, name, args);

  /** A directory index_directory may read (for the null-arguments case below). */
  let shared: string;

  beforeAll(async () => {
    shared = await tempDir();
    await writeFile(path.join(shared, 'notes.md'), 'a note\n');
    mcp = await connect({ allowedRoots: [shared] });
    tools = mcp.tools;
  }, 60_000);
  afterAll(async () => mcp.close());

  it('answers initialize before the install has finished', () => {
    // Boot needs initdb and the install (seconds); initialize came back while it was still going.
    expect(mcp.statusAfterInitialize).toBe('booting');
  });

  it('lists the tools with input and output schemas and honest annotations', () => {
    expect(tools.map((t) => t.name)).toEqual(TOOL_NAMES);
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type).toBe('object');
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(byName['ensure_workspace']?.annotations).toMatchObject({ idempotentHint: true, destructiveHint: false });
    expect(byName['list_workspaces']?.annotations?.readOnlyHint).toBe(true);
    expect(byName['validate_columns']?.annotations?.readOnlyHint).toBe(true);
    expect(byName['workspace_status']?.annotations?.readOnlyHint).toBe(true);
    expect(byName['query']?.annotations?.readOnlyHint).toBe(true);
    expect(byName['execute']?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(byName['ensure_workspace']?.description).toMatch(/project_client_a/);
    expect(JSON.stringify(byName['ensure_workspace']?.inputSchema)).toContain('lower-case ASCII letters');
  });

  it('ensure_workspace creates once, then reports the existing workspace', async () => {
    const first = await call('ensure_workspace', { project_id: 'client-a' });
    expect(first.isError).toBe(false);
    expect(first.data).toMatchObject({ project_id: 'client-a', schema_name: 'project_client_a', created: true, tables: ['chunks', 'files', 'repositories'] });
    // The text block is the structured result as JSON, so a client that reads only text can parse it.
    expect(JSON.parse(first.text)).toEqual(first.data);
    const second = await call('ensure_workspace', { project_id: 'client-a' });
    expect(second.data).toMatchObject({ created: false, created_at: first.data['created_at'] });
  });

  it('rejects bad ids with the id rules and keeps serving', async () => {
    for (const bad of ['Bad_Id', '', 'a--b', '-a', 'a-', 'x'.repeat(56), "x'; drop table y; --"]) {
      const result = await call('ensure_workspace', { project_id: bad });
      expect(result.isError, bad).toBe(true);
      expect(result.text).toContain('lower-case ASCII letters and digits');
    }
    expect((await call('ensure_workspace', { project_id: 'still-serving' })).isError).toBe(false);
  });

  it('list_workspaces pages with a cursor and filters by prefix', async () => {
    const ids = ['page-a', 'page-b', 'page-c', 'page-d', 'page-e', 'page-f', 'page-g'];
    for (const id of ids) await call('ensure_workspace', { project_id: id });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await call('list_workspaces', { limit: 3, prefix: 'page-', ...(cursor ? { cursor } : {}) });
      expect(page.isError).toBe(false);
      seen.push(...(page.data['workspaces'] as { project_id: string }[]).map((w) => w.project_id));
      cursor = (page.data['next_cursor'] as string | null) ?? undefined;
    } while (cursor);
    expect(seen).toEqual(ids);
    const bad = await call('list_workspaces', { cursor: 'garbage!' });
    expect(bad).toMatchObject({ isError: true });
    expect(bad.text).toContain('next_cursor');
    expect((await call('list_workspaces', { limit: 0 })).isError).toBe(true);
    expect((await call('list_workspaces', { limit: 501 })).isError).toBe(true);
  });

  it('validate_columns reports present and missing columns, in a workspace or by qualified name', async () => {
    await call('ensure_workspace', { project_id: 'cols' });
    const inWorkspace = await call('validate_columns', { project_id: 'cols', table: 'chunks', columns: ['id', 'embedding', 'nope'] });
    expect(inWorkspace.data).toEqual({
      schema: 'project_cols',
      table: 'chunks',
      table_exists: true,
      present: ['id', 'embedding'],
      missing: ['nope'],
      valid: false,
    });
    const qualified = await call('validate_columns', { table: 'project_registry.workspace_config', columns: ['project_id'] });
    expect(qualified.data).toMatchObject({ table_exists: true, valid: true });
    const missing = await call('validate_columns', { table: 'project_cols.nothing_here', columns: ['id'] });
    expect(missing.data).toMatchObject({ table_exists: false, valid: false, missing: ['id'] });
    const outside = await call('validate_columns', { table: 'public.nothing_here', columns: ['id'] });
    expect(outside.isError).toBe(true);
    expect(outside.text).toContain('global tables of the enabled extensions');
    const noWorkspace = await call('validate_columns', { project_id: 'never-made', table: 'chunks', columns: ['id'] });
    expect(noWorkspace.isError).toBe(true);
    expect(noWorkspace.text).toContain('ensure_workspace');
  });

  // On this server too: its workspaces (nulls, nulls-snap, nulls-fork) are its own; a server each costs a store.
  describe('null for an optional argument', () => {
    it('means "not given" for every optional argument of every tool', async () => {
      expect((await call('ensure_workspace', { project_id: 'nulls' })).isError).toBe(false);
      const vector = Array.from({ length: 768 }, (_, i) => (i % 7) / 7);
      // Only the required arguments: keyed by ToolName, so a new tool does not compile here until it has some.
      const required: Record<ToolName, Record<string, unknown>> = {
        ensure_workspace: { project_id: 'nulls' },
        list_workspaces: {},
        validate_columns: { table: 'project_registry.workspace_config', columns: ['project_id'] },
        workspace_status: {},
        describe_workspace: { project_id: 'nulls' },
        search_vectors: { project_id: 'nulls', table: 'chunks', column: 'embedding', vector },
        query: { project_id: 'nulls', sql: 'SELECT 1 AS one' },
        execute: { project_id: 'nulls', sql: 'CREATE TABLE IF NOT EXISTS notes (id int)' },
        drop_workspace: { project_id: 'nulls', confirm: 'nulls' },
        search: { project_id: 'nulls', query: 'note' },
        add_documents: { project_id: 'nulls', documents: [{ source: 'a.md', text: 'a note' }] },
        index_directory: { project_id: 'nulls', path: shared },
        index_status: { project_id: 'nulls' },
        // On a workspace of their own, in TOOLS order: taken, listed, restored (kept as 2), dropped, forked.
        snapshot_workspace: { project_id: 'nulls-snap' },
        list_snapshots: { project_id: 'nulls-snap' },
        restore_workspace: { project_id: 'nulls-snap', snapshot: 1, confirm: 'nulls-snap' },
        drop_snapshot: { project_id: 'nulls-snap', snapshot: 2 },
        fork_workspace: { from: 'nulls-snap', to: 'nulls-fork' },
      };
      expect((await call('ensure_workspace', { project_id: 'nulls-snap' })).isError).toBe(false);
      let nulls = 0;
      for (const name of TOOL_NAMES) {
        const schema = mcp.tools.find((t) => t.name === name)?.inputSchema;
        const optional = Object.keys(schema?.properties ?? {}).filter((key) => !(schema?.required ?? []).includes(key));
        nulls += optional.length;
        const withNulls = { ...required[name], ...Object.fromEntries(optional.map((key) => [key, null])) };
        const annotations = mcp.tools.find((t) => t.name === name)?.annotations;
        const expected = annotations?.readOnlyHint ? await call(name, required[name]) : undefined;
        const result = await call(name, withNulls);
        expect(result.isError, `${name}: ${result.text}`).toBe(false);
        // A read-only tool answers exactly as if the null arguments had been left out (index_status
        // too, but the index_directory run it reports may have moved on between the two calls).
        if (expected && name !== 'index_status') expect(result.data, name).toEqual(expected.data);
      }
      expect(nulls).toBeGreaterThanOrEqual(10);
      // A required argument sent as null is still refused, with the SDK's message.
      const refused = await call('query', { project_id: 'nulls', sql: null });
      expect(refused.isError).toBe(true);
      expect(refused.text).toMatch(/sql/);
    }, 60_000);
  });
});

describe('workspace_status over MCP', () => {
  it('reports one workspace and the fleet, and rejects an unknown workspace', async () => {
    const dir = await writeExtension(await tempDir(), { id: 'notes' }, {
      'workspace/schema.sql': 'CREATE TABLE IF NOT EXISTS notes (id int);',
      'workspace/migrations/0001_body.sql': 'ALTER TABLE notes ADD COLUMN IF NOT EXISTS body text;',
    });
    const mcp = await connect({ extensionDirs: [dir] });
    try {
      const call = (name: string, args: Record<string, unknown>) => callTool(mcp.client, mcp.tools, name, args);
      await call('ensure_workspace', { project_id: 'status-a' });
      await call('ensure_workspace', { project_id: 'status-b' });
      const one = await call('workspace_status', { project_id: 'status-a' });
      expect(one.data).toEqual({
        project_id: 'status-a',
        workspace: { schema_name: 'project_status_a', up_to_date: true, applied: ['codebase/0001_search', 'notes/0001_body'], pending: [] },
        fleet: null,
      });
      const all = await call('workspace_status', {});
      expect(all.data).toEqual({ project_id: null, workspace: null, fleet: { workspaces: 2, up_to_date: 2, lagging: 0, pending: [] } });
      const unknown = await call('workspace_status', { project_id: 'nobody' });
      expect(unknown.isError).toBe(true);
      expect(unknown.text).toContain('ensure_workspace');
    } finally {
      await mcp.close();
    }
  }, 60_000);
});

describe('MCP server whose install failed', () => {
  it('returns the install failure from every tool', async () => {
    const dir = await writeExtension(await tempDir(), { id: 'broken' }, {
      'schema.sql': 'CREATE TABLE IF NOT EXISTS broken_t (id int REFERENCES nope (id));',
    });
    const mcp = await connect({ extensionDirs: [dir] });
    try {
      // Keyed by ToolName: a new tool does not compile here until it is given arguments.
      const argsFor: Record<ToolName, Record<string, unknown>> = {
        ensure_workspace: { project_id: 'a' },
        list_workspaces: {},
        validate_columns: { table: 'x', columns: ['y'] },
        workspace_status: {},
        describe_workspace: { project_id: 'a' },
        search_vectors: { project_id: 'a', table: 'chunks', column: 'embedding', vector: [0.1, 0.2] },
        search: { project_id: 'a', query: 'install' },
        add_documents: { project_id: 'a', documents: [{ source: 'notes.md', text: 'hello' }] },
        index_directory: { project_id: 'a', path: '/tmp' },
        index_status: { project_id: 'a' },
        query: { project_id: 'a', sql: 'SELECT 1' },
        execute: { project_id: 'a', sql: 'CREATE TABLE t (n int)' },
        drop_workspace: { project_id: 'a', confirm: 'a' },
        snapshot_workspace: { project_id: 'a', label: 'x' },
        list_snapshots: { project_id: 'a' },
        restore_workspace: { project_id: 'a', snapshot: 1, confirm: 'a' },
        drop_snapshot: { project_id: 'a', snapshot: 1 },
        fork_workspace: { from: 'a', to: 'b' },
      };
      for (const name of TOOL_NAMES) {
        const result = await callTool(mcp.client, mcp.tools, name, argsFor[name]);
        expect(result.isError, name).toBe(true);
        expect(result.text).toContain('Extension "broken", structural phase: broken/schema.sql statement 1/1');
        expect(result.text).toContain('relation "nope" does not exist');
      }
      expect(mcp.engine.status).toMatchObject({ state: 'failed', retrying: false });
    } finally {
      await mcp.close();
    }
  }, 60_000);
});
