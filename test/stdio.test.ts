import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TOOL_NAMES } from '../src/mcp/tool-registry.js';
import { tempDir } from './support/fixtures.js';
import { controls } from './unit/control-characters.js';
import { callTool } from './support/mcp.js';

const run = promisify(execFile);
const MAIN = path.resolve('dist/server/main.js');
const env = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp' };

beforeAll(async () => {
  // `npm test` builds first; a bare `vitest run` of this file builds here.
  if (!existsSync(MAIN)) await run('npx', ['tsc', '-p', '.']);
}, 120_000);

/** One embedded store for the file, used by one server at a time: initdb is paid once. */
let dataDir: string;
beforeAll(async () => {
  dataDir = await tempDir('pgw-stdio-');
});
afterAll(async () => rm(dataDir, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface RawResponse {
  jsonrpc: string;
  id?: number | string | null;
  error?: unknown;
  result?: unknown;
}

/**
 * Raw servers still running after their test: a failed assertion skips the test's own end(), and
 * a server left holding the data directory would fail every later test that opens it.
 */
const running = new Set<Promise<unknown>>();
const killers = new Set<() => void>();
afterEach(async () => {
  for (const kill of killers) kill();
  await Promise.all(running);
  killers.clear();
  running.clear();
});

/** The built server driven by hand-written lines, for input no SDK client would send. */
function rawServer(dir: string, extraEnv: Record<string, string> = {}) {
  const child = spawn(process.execPath, [MAIN, '--data-dir', dir], { env: { ...env, ...extraEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  // Kept bounded: the huge-line test must not measure this process's copy of the server's logs.
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-1_000_000)));
  // A server that stopped reading may close the pipe under a large write: the assertions say so.
  child.stdin.on('error', () => undefined);
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  running.add(exited);
  killers.add(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  const responses = () =>
    stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as RawResponse);
  const send = (message: unknown) => child.stdin.write(`${JSON.stringify(message)}\n`);
  const waitFor = async (id: number) => {
    for (let i = 0; i < 1200 && !responses().some((r) => r.id === id); i++) await new Promise((r) => setTimeout(r, 50));
    return responses().find((r) => r.id === id);
  };
  return {
    pid: child.pid as number,
    stderr: () => stderr,
    responses,
    send,
    waitFor,
    /** Writes a line (or, `end` false, part of one), waiting for the pipe to drain (it may hold megabytes). */
    sendRaw: (text: string, end = true) =>
      new Promise<void>((resolve, reject) => child.stdin.write(end ? `${text}\n` : text, (error) => (error ? reject(error) : resolve()))),
    /** Handshake and one tool call, so that boot is done and the store is open. */
    async initialize() {
      send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
      send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'list_workspaces', arguments: {} } });
      expect(await waitFor(1)).toHaveProperty('result');
    },
    /** Closes stdin and returns the exit code, or 'alive' if the process ignored EOF for 15 s. */
    async end(): Promise<number | null | 'alive'> {
      child.stdin.end();
      const timeout = new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), 15_000));
      const outcome = await Promise.race([exited, timeout]);
      if (outcome === 'alive') child.kill('SIGKILL');
      return outcome;
    },
  };
}

/** The oversized stdin line of the memory test, in MiB (written a MiB at a time). */
const HUGE_LINE_MIB = 256;

/** The process's peak resident set so far (Linux). */
function peakRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

describe('the built server over stdio', () => {
  it('serves every tool to the SDK client and exits cleanly when stdin closes', async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [MAIN, '--data-dir', dataDir], env, stderr: 'pipe' });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'stdio-test', version: '1' });
    await client.connect(transport);
    const pid = transport.pid as number;
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(TOOL_NAMES);

    const ensured = await callTool(client, tools, 'ensure_workspace', { project_id: 'over-stdio' });
    expect(ensured.data).toMatchObject({ schema_name: 'project_over_stdio', created: true });
    const listed = await callTool(client, tools, 'list_workspaces', { prefix: 'over-' });
    expect(listed.data['workspaces']).toEqual([expect.objectContaining({ project_id: 'over-stdio' })]);
    const checked = await callTool(client, tools, 'validate_columns', { project_id: 'over-stdio', table: 'files', columns: ['path'] });
    expect(checked.data).toMatchObject({ valid: true });
    const bad = await callTool(client, tools, 'ensure_workspace', { project_id: 'NOT valid' });
    expect(bad.isError).toBe(true);

    await client.close();
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
    expect(stderr).toContain('shutting down');
    // The lock file is empty again: the store was released, not abandoned.
    expect((await readFile(path.join(dataDir, 'lock'), 'utf8')).trim()).toBe('');
  }, 60_000);

  it('writes nothing but JSON-RPC to stdout, answers a malformed line with an error and keeps serving', async () => {
    // A fresh store, so that PGlite's initdb runs inside this server too and is held to the rule.
    const freshDir = await tempDir('pgw-stdout-');
    const child = spawn(process.execPath, [MAIN, '--data-dir', freshDir], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const send = (message: unknown) => child.stdin.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\n`);
    const responses = () =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { jsonrpc: string; id?: number | null; error?: unknown; result?: unknown });
    const waitFor = async (id: number) => {
      for (let i = 0; i < 600 && !responses().some((r) => r.id === id); i++) await new Promise((r) => setTimeout(r, 50));
      return responses().find((r) => r.id === id);
    };

    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    expect(await waitFor(1)).toHaveProperty('result');
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send('{not json');
    send({ hello: 'not json-rpc' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'ensure_workspace', arguments: { project_id: 'raw-client' } } });
    const called = await waitFor(2);
    expect(called).toMatchObject({ result: { structuredContent: { project_id: 'raw-client' } } });

    child.stdin.end();
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    // Every stdout line is a JSON-RPC message (JSON.parse above would have thrown otherwise).
    expect(responses().every((r) => r.jsonrpc === '2.0')).toBe(true);
    const errors = responses().filter((r) => r.id === null).map((r) => (r.error as { code: number }).code);
    expect(errors).toEqual([-32700, -32600]);
    expect(stderr).toMatch(/pg-workspace-mcp info: serving MCP on stdio/);
    await rm(freshDir, { recursive: true, force: true });
  }, 60_000);

  it('answers a line over 10 MiB with an error carrying its id, memory bounded, then serves the next line and ends on EOF', async () => {
    const server = rawServer(dataDir);
    await server.initialize();
    // The workspace is made before the baseline, so that the call after the huge line (the same
    // id again) adds nothing to PGlite's heap, which grows in steps: the bound is on the line.
    server.send({ jsonrpc: '2.0', id: 100, method: 'tools/call', params: { name: 'ensure_workspace', arguments: { project_id: 'before-huge' } } });
    expect(await server.waitFor(100)).toHaveProperty('result');
    const before = peakRssBytes(server.pid);
    // The TS SDK puts `id` after `params`, so the id is only readable at the end of the line.
    const mib = 'x'.repeat(1024 * 1024);
    await server.sendRaw('{"method":"tools/call","params":{"name":"ensure_workspace","arguments":{"project_id":"', false);
    for (let i = 0; i < HUGE_LINE_MIB; i++) await server.sendRaw(mib, false);
    await server.sendRaw('"}},"jsonrpc":"2.0","id":2}');
    server.send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'ensure_workspace', arguments: { project_id: 'before-huge' } } });
    const answered = await server.waitFor(3);
    expect(answered).toMatchObject({ result: { structuredContent: { project_id: 'before-huge', created: false } } });
    const refused = server.responses().find((r) => r.id === 2);
    expect(refused).toMatchObject({ error: { code: -32600, message: expect.stringContaining('10485760') } });
    // The error came first: the stream was resynchronised at the oversized line's newline.
    expect(server.responses().findIndex((r) => r.id === 2)).toBeLessThan(server.responses().findIndex((r) => r.id === 3));
    // The line went through; the server never held it. Each stdin chunk it read and dropped is
    // garbage that V8 frees lazily: a chunk's bytes are memory outside V8's heap, which forces a
    // collection only once about 64 MB of it has been allocated since the last one, so the peak
    // grew anywhere from 0 to about 64 MB from one run to the next (the same with any logger; a
    // 32 MB bound on a 64 MiB line failed now and then). So the line is four times that bound,
    // and the bound half the line: holding it would take at least the whole line.
    expect(peakRssBytes(server.pid) - before).toBeLessThan((HUGE_LINE_MIB / 2) * 1024 * 1024);

    expect(await server.end()).toBe(0);
    expect((await readFile(path.join(dataDir, 'lock'), 'utf8')).trim()).toBe('');
  }, 90_000);

  it("logs an agent's table name with its control characters escaped (the embedded store's maintenance names the table it analyzed)", async () => {
    // A store of its own, maintained as soon as it idles, logging each table it maintains.
    const noisyDir = await tempDir('pgw-stdio-noisy-');
    const server = rawServer(noisyDir, { PG_WORKSPACE_MAINTENANCE_IDLE_MS: '50', PG_WORKSPACE_LOG_LEVEL: 'debug' });
    await server.initialize();
    // The agent names its table: ESC ]0;pwned BEL retitles the window, ESC [2K CR erases the line,
    // CSI (C1) colours, U+202E reverses what follows. JSON.stringify escapes the C0 ones in a log
    // line's fields, but not C1 controls nor bidi overrides.
    const table = 'U&"failed\\001B]0;pwned\\0007\\001B[2K\\000D\\001B[8mhidden\\009B31m\\202Eevil"';
    const statements = [`CREATE TABLE ${table} (id int, note text)`, `INSERT INTO ${table} SELECT g, 'x' FROM generate_series(1, 2000) g`];
    for (const [i, sql] of statements.entries()) {
      server.send({ jsonrpc: '2.0', id: 20 + i, method: 'tools/call', params: { name: 'execute', arguments: { project_id: 'noisy', sql } } });
      expect(await server.waitFor(20 + i)).toMatchObject({ result: { structuredContent: { truncated: false } } });
    }
    const analyzed = (l: string) => l.includes('embedded store maintenance') && l.includes('evil');
    for (let i = 0; i < 400 && !server.stderr().split('\n').some(analyzed); i++) await new Promise((r) => setTimeout(r, 50));
    const line = server.stderr().split('\n').find(analyzed) ?? '';
    expect(line).toContain('failed\\u001b]0;pwned\\u0007\\u001b[2K\\r\\u001b[8mhidden\\u009b31m\\u202eevil');
    expect(controls(server.stderr(), '\n')).toEqual([]);
    expect(await server.end()).toBe(0);
    await rm(noisyDir, { recursive: true, force: true });
  }, 60_000);

  it('answers an invalid request whose id is readable with an error carrying that id', async () => {
    const server = rawServer(dataDir);
    await server.initialize();
    server.send({ jsonrpc: '2.0', id: 7, method: 42 });
    server.send({ jsonrpc: '2.0', id: 'eight', method: 'tools/list', params: 'not an object' });
    // Looks like a response: answering it with its id could settle one of the client's own requests.
    server.send({ jsonrpc: '2.0', id: 9, result: 'x', error: 'y' });
    server.send({ jsonrpc: '2.0', id: 10, method: 'tools/list' });
    await server.waitFor(10);
    expect(server.responses().find((r) => r.id === 7)).toMatchObject({ error: { code: -32600 } });
    expect(server.responses().find((r) => r.id === 'eight')).toMatchObject({ error: { code: -32600 } });
    expect(server.responses().some((r) => r.id === 9)).toBe(false);
    expect(server.responses().filter((r) => r.id === null)).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: -32600 }) })]);
    expect(await server.end()).toBe(0);
  }, 60_000);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`shuts down cleanly on ${signal}, releasing the embedded store`, async () => {
      const child = spawn(process.execPath, [MAIN, '--data-dir', dataDir], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })}\n`);
      // The first tools/call waits for boot, so an answer means the store is open and locked.
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_workspaces', arguments: {} } })}\n`);
      for (let i = 0; i < 600 && !stdout.includes('"id":2'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(stdout).toContain('"id":2');
      expect((await readFile(path.join(dataDir, 'lock'), 'utf8')).trim()).toBe(String(child.pid));
      child.kill(signal);
      const code = await new Promise((resolve) => child.on('exit', resolve));
      expect(code).toBe(0);
      expect((await readFile(path.join(dataDir, 'lock'), 'utf8')).trim()).toBe('');
    }, 60_000);
  }

  it('prints its version and help, and rejects bad configuration naming the setting', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
    expect((await run(process.execPath, [MAIN, '--version'])).stdout.trim()).toBe(pkg.version);
    expect((await run(process.execPath, [MAIN, '--help'])).stdout).toContain('Usage: pg-workspace-mcp');
    const failure = await run(process.execPath, [MAIN], { env: { ...env, PG_WORKSPACE_LOCK_TIMEOUT_MS: 'abc' } }).catch((e: unknown) => e);
    expect((failure as { code: number }).code).toBe(2);
    expect((failure as { stderr: string }).stderr).toContain('PG_WORKSPACE_LOCK_TIMEOUT_MS');
    const flag = await run(process.execPath, [MAIN, '--no-such-flag']).catch((e: unknown) => e);
    expect((flag as { stderr: string }).stderr).toContain("Unknown option '--no-such-flag'");
  });

  it('is driven by the MCP Inspector CLI', async () => {
    const inspector = async (...args: string[]) => {
      const { stdout } = await run('npx', ['--no-install', '@modelcontextprotocol/inspector', '--cli', process.execPath, MAIN, '--data-dir', dataDir, ...args], {
        env: { ...process.env, PG_WORKSPACE_LOG_LEVEL: 'warn' },
      });
      return JSON.parse(stdout) as Record<string, unknown>;
    };
    const listed = await inspector('--method', 'tools/list');
    expect((listed['tools'] as { name: string }[]).map((t) => t.name)).toEqual(TOOL_NAMES);
    const called = await inspector('--method', 'tools/call', '--tool-name', 'ensure_workspace', '--tool-arg', 'project_id=inspector-demo');
    expect(called['structuredContent']).toMatchObject({ project_id: 'inspector-demo', schema_name: 'project_inspector_demo' });
  }, 90_000);
});
