import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { request, type IncomingHttpHeaders } from 'node:http';
import { CallToolResultSchema, ErrorCode, ListRootsRequestSchema, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it, vi, type TestContext } from 'vitest';
import { TOOL_NAMES } from '../src/mcp/tool-registry.js';
import { holdInstallLock, tempDir } from './support/fixtures.js';
import { startHttpServer, type HttpServerProcess } from './support/http-server.js';
import { startPgCluster, type PgCluster } from './support/pg-cluster.js';
import { MAIN } from './support/server-process.js';

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

/** A raw POST with the headers a browser (or a rebinding attacker's page) would choose. */
function post(url: URL, headers: Record<string, string>, body = INITIALIZE): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('Streamable HTTP on the embedded store', () => {
  let server: HttpServerProcess;
  beforeAll(async () => {
    server = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], {});
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('answers /healthz', async () => {
    const response = await fetch(new URL('/healthz', server.url));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok' });
  });

  // A fresh embedded store boots first (initdb, extension schemas): seconds on a loaded machine.
  it('serves 8 sessions provisioning at once on one engine, with zero errors', { timeout: 180_000 }, async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => server.connect()));
    try {
      const results = (await Promise.all(
        clients.flatMap((client, i) => [
          client.callTool({ name: 'ensure_workspace', arguments: { project_id: `http-own-${i}` } }),
          client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'http-shared' } }),
        ]),
      )) as CallToolResult[];
      expect(results.filter((r) => r.isError).map((r) => JSON.stringify(r.content))).toEqual([]);
      const shared = results.filter((r) => (r.structuredContent as { project_id: string }).project_id === 'http-shared');
      expect(shared.filter((r) => (r.structuredContent as { created: boolean }).created)).toHaveLength(1);
      const list = (await clients[0]!.callTool({ name: 'list_workspaces', arguments: { prefix: 'http-' } })) as CallToolResult;
      expect((list.structuredContent as { workspaces: unknown[] }).workspaces).toHaveLength(9);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('refuses a foreign Host or Origin (DNS rebinding) and accepts its own', async () => {
    const own = `127.0.0.1:${server.url.port}`;
    const foreignHost = await post(server.url, { host: `attacker.example:${server.url.port}` });
    expect(foreignHost.status).toBe(403);
    expect(foreignHost.body).toContain('Host header not allowed');
    const foreignOrigin = await post(server.url, { host: own, origin: 'http://attacker.example' });
    expect(foreignOrigin.status).toBe(403);
    expect(foreignOrigin.body).toContain('Origin not allowed');
    expect((await post(server.url, { host: `localhost:${server.url.port}`, origin: `http://localhost:${server.url.port}` })).status).toBe(200);
  });

  it('answers protocol errors as JSON-RPC errors, and the text block is the JSON result', async () => {
    const client = await server.connect();
    try {
      const unknown = await client.callTool({ name: 'no_such_tool', arguments: {} }).catch((e: unknown) => e);
      expect(unknown).toBeInstanceOf(McpError);
      expect((unknown as McpError).code).toBe(ErrorCode.InvalidParams);
      expect((unknown as McpError).message).toBe(`MCP error -32602: Unknown tool: no_such_tool. This server's tools: ${TOOL_NAMES.join(', ')}.`);

      const stringArgs = await client
        .request({ method: 'tools/call', params: { name: 'list_workspaces', arguments: '{"limit":5}' as unknown as Record<string, unknown> } }, CallToolResultSchema)
        .catch((e: unknown) => e);
      expect(stringArgs).toBeInstanceOf(McpError);
      expect((stringArgs as McpError).code).toBe(ErrorCode.InvalidParams);
      expect((stringArgs as McpError).message).toBe(
        "MCP error -32602: Invalid tools/call request: params.arguments must be a JSON object of the tool's arguments (got a string).",
      );

      const ok = (await client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'http-text' } })) as CallToolResult;
      const [block] = ok.content;
      expect(block?.type).toBe('text');
      expect(JSON.parse(block?.type === 'text' ? block.text : '')).toEqual(ok.structuredContent);
      // And the session still serves.
      expect((await client.callTool({ name: 'list_workspaces', arguments: {} })).isError).toBeFalsy();
    } finally {
      await client.close();
    }
  });
});

/** A session opened with a bare initialize: unlike the SDK's client, it holds no GET stream open. */
async function openRawSession(url: URL): Promise<string> {
  const response = await post(url, {});
  expect(response.status, response.body).toBe(200);
  const id = response.headers['mcp-session-id'];
  if (typeof id !== 'string') throw new Error(`initialize answered without Mcp-Session-Id: ${response.body}`);
  return id;
}

const ping = (url: URL, session: string) =>
  post(url, { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' }, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }));

/** Opens the session's standalone GET SSE stream and holds it open until close(). */
function openStream(url: URL, session: string): Promise<{ close(): void }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers: { accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET stream refused: ${res.statusCode}`));
      resolve({ close: () => req.destroy() });
    });
    req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
    req.end();
  });
}

async function healthz(url: URL): Promise<{ engine: string; sessions: number }> {
  return (await fetch(new URL('/healthz', url))).json() as Promise<{ engine: string; sessions: number }>;
}

describe('Streamable HTTP session expiry and cap', () => {
  it('closes a session idle past the timeout, but not while its GET stream is open', { timeout: 120_000 }, async () => {
    const server = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], { PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: '2' });
    try {
      // The embedded store's boot can hold the event loop for seconds: let it finish first, so
      // that no stall of that size falls between opening a session and opening its stream.
      await vi.waitFor(async () => expect((await healthz(server.url)).engine).toBe('ready'), { timeout: 90_000, interval: 200 });
      const listening = await openRawSession(server.url);
      const stream = await openStream(server.url, listening);
      // Opened after the stream: whenever this one is past the timeout, so is the other's last activity.
      const idle = await openRawSession(server.url);
      expect((await healthz(server.url)).sessions).toBe(2);

      await vi.waitFor(async () => expect((await healthz(server.url)).sessions).toBe(1), { timeout: 30_000, interval: 200 });
      const expired = await ping(server.url, idle);
      expect(expired.status).toBe(404);
      expect(expired.body).toContain('Session not found');
      expect(server.stderr()).toContain(`session expired: idle past the timeout {"session":"${idle}"`);
      expect((await ping(server.url, listening)).status).toBe(200);

      // Once its stream closes, the other session goes idle and expires in turn.
      stream.close();
      await vi.waitFor(async () => expect((await healthz(server.url)).sessions).toBe(0), { timeout: 30_000, interval: 200 });
      expect((await ping(server.url, listening)).status).toBe(404);
    } finally {
      await server.stop();
    }
  });

  it('at the cap, a new session evicts the least recently active idle one; when all are busy it gets 503', { timeout: 60_000 }, async () => {
    const server = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], { PG_WORKSPACE_HTTP_MAX_SESSIONS: '2' });
    const streams: { close(): void }[] = [];
    try {
      const first = await openRawSession(server.url);
      const second = await openRawSession(server.url);
      // A request makes the first the more recently active of the two idle sessions.
      expect((await ping(server.url, first)).status).toBe(200);
      const third = await openRawSession(server.url);
      expect((await ping(server.url, second)).status).toBe(404);
      expect(server.stderr()).toContain(`session evicted: the server is at its session cap {"session":"${second}"}`);
      expect((await ping(server.url, first)).status).toBe(200);
      expect((await healthz(server.url)).sessions).toBe(2);

      streams.push(await openStream(server.url, first), await openStream(server.url, third));
      const refused = await post(server.url, {});
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body)).toEqual({
        jsonrpc: '2.0',
        error: {
          code: -32000,
          message:
            'Too many sessions: all 2 are busy (a request in flight or an open stream). ' +
            'Try again later, or raise the cap with --http-max-sessions / PG_WORKSPACE_HTTP_MAX_SESSIONS.',
        },
        id: null,
      });
      expect((await ping(server.url, first)).status).toBe(200);
      expect((await ping(server.url, third)).status).toBe(200);
      expect((await healthz(server.url)).sessions).toBe(2);

      // A closed stream makes its session idle again, and so evictable.
      streams.pop()?.close();
      await vi.waitFor(async () => expect((await post(server.url, {})).status).toBe(200), { timeout: 10_000, interval: 100 });
      expect((await ping(server.url, third)).status).toBe(404);
      expect((await ping(server.url, first)).status).toBe(200);
    } finally {
      for (const stream of streams) stream.close();
      await server.stop();
    }
  });
});

describe('Streamable HTTP security and lifecycle', () => {
  it('requires the bearer token when one is set', async () => {
    const token = 'a-test-token-of-32-characters-xx';
    const server = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], { PG_WORKSPACE_HTTP_TOKEN: token });
    try {
      expect((await post(server.url, { host: `127.0.0.1:${server.url.port}` })).status).toBe(401);
      expect((await post(server.url, { host: `127.0.0.1:${server.url.port}`, authorization: 'Bearer wrong-token-of-32-characters-xxx' })).status).toBe(401);
      await expect(server.connect()).rejects.toThrow(/401|Unauthorized/);
      const client = await server.connect({ Authorization: `Bearer ${token}` });
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('ensure_workspace');
      await client.close();
    } finally {
      await server.stop();
    }
  });

  it("reads no directory of the server's machine on a client's roots alone: only --allow-root ones", { timeout: 120_000 }, async () => {
    // Issue 27, red team round 3: a client's roots are paths on its own machine; over HTTP one
    // declaring file:/// had the server index any directory it could read (a ~/.pgpass, say) into
    // a workspace, for the agent to read back through query.
    const base = await tempDir('pgw-http-roots-');
    const serverFiles = path.join(base, 'server-home');
    const shared = path.join(base, 'shared');
    await mkdir(serverFiles, { recursive: true });
    await mkdir(shared, { recursive: true });
    await writeFile(path.join(serverFiles, 'pgpass.txt'), 'db.internal:5432:*:mcp_app:the-server-password\n');
    await writeFile(path.join(shared, 'notes.md'), 'Shared notes the operator allowed.\n');
    const connectWithRoots = async (server: HttpServerProcess) => {
      const client = new Client({ name: 'roots', version: '1' }, { capabilities: { roots: {} } });
      client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///' }] }));
      await client.connect(new StreamableHTTPClientTransport(server.url));
      return client;
    };
    const call = async (client: Client, name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: 60_000 })) as CallToolResult & { structuredContent?: Record<string, unknown> };
    const indexed = async (client: Client, projectId: string, dir: string) => {
      const started = await call(client, 'index_directory', { project_id: projectId, path: dir });
      if (started.isError) return started;
      for (;;) {
        const status = await call(client, 'index_status', { project_id: projectId });
        const [run] = status.structuredContent?.['runs'] as Array<{ state: string }>;
        if (run?.state !== 'running') return status;
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    const open = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], {});
    try {
      const client = await connectWithRoots(open);
      const run = await indexed(client, 'roots', serverFiles);
      expect(run.isError, JSON.stringify(run.content)).toBe(true);
      expect(JSON.stringify(run.content)).toMatch(/over HTTP.*--allow-root/);
      const leaked = await call(client, 'query', { project_id: 'roots', sql: "SELECT count(*)::int FROM chunks WHERE content LIKE '%server-password%'" });
      expect(JSON.stringify(leaked.content)).not.toMatch(/\[\[1\]\]/);
      await client.close();
    } finally {
      await open.stop();
    }
    const allowing = await startHttpServer(['--data-dir', await tempDir('pgw-http-'), '--allow-root', shared], {});
    try {
      const client = await connectWithRoots(allowing);
      expect((await indexed(client, 'roots', shared)).isError).toBeFalsy();
      expect(JSON.stringify((await indexed(client, 'roots', serverFiles)).content)).toMatch(/outside the directories this server allows/);
      await client.close();
    } finally {
      await allowing.stop();
    }
  });

  it('refuses to listen beyond loopback without a token', () => {
    const run = spawnSync(process.execPath, [MAIN, '--http', '0.0.0.0:0'], { env: { PATH: process.env['PATH'] ?? '' }, encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('PG_WORKSPACE_HTTP_TOKEN');
  });

  it('shuts down on SIGTERM, closing open sessions (the engine still booting)', async () => {
    const server = await startHttpServer(['--data-dir', await tempDir('pgw-http-')], {});
    const client = await server.connect();
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(server.stderr()).toMatch(/shutting down \{"reason":"SIGTERM","sessions":1\}/);
    await client.close().catch(() => undefined);
  });
});

describe('cancellation over HTTP (PostgreSQL)', () => {
  let cluster: PgCluster | null = null;
  beforeAll(async () => {
    cluster = await startPgCluster();
  });
  afterAll(async () => {
    await cluster?.destroy();
  });
  const needCluster = (ctx: TestContext) => {
    if (!cluster) ctx.skip();
    return cluster as PgCluster;
  };

  it('a call cancelled while boot waits starts no work; its uncancelled twin does', async (ctx) => {
    const url = await needCluster(ctx).createDatabase('http_cancel');
    // Boot waits on the install lock, so both calls are held before their work can start.
    const lock = await holdInstallLock(url);
    const server = await startHttpServer([], { DATABASE_URL: url });
    try {
      const client = await server.connect();
      const cancel = new AbortController();
      const cancelled = client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'cancelled' } }, undefined, { signal: cancel.signal });
      const kept = client.callTool({ name: 'ensure_workspace', arguments: { project_id: 'kept' } });
      // Let the request reach the server before the cancellation does (they travel as separate POSTs).
      await new Promise((r) => setTimeout(r, 1000));
      cancel.abort('changed my mind');
      await expect(cancelled).rejects.toThrow();
      await lock.release();
      expect(((await kept) as CallToolResult).isError).toBeFalsy();
      const list = (await client.callTool({ name: 'list_workspaces', arguments: {} })) as CallToolResult;
      expect((list.structuredContent as { workspaces: { project_id: string }[] }).workspaces.map((w) => w.project_id)).toEqual(['kept']);
      await client.close();
    } finally {
      await lock.release();
      await server.stop();
    }
  });
});
