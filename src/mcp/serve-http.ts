import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Config, HttpConfig } from '../config.js';
import { ProvisioningEngine } from '../engine.js';
import { createStderrLogger } from '../logger.js';
import { packageVersion } from '../package-info.js';
import { HttpSessions } from './http-sessions.js';
import { createSessionServer } from './server.js';

function reject(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

/** The host name a Host header or an Origin names, as the allow-list spells it ("[::1]" for IPv6). */
function hostnameOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * A web page the user visits can make their browser send requests to a server on loopback
 * (DNS rebinding, or a plain cross-origin POST): such requests name a foreign Host or Origin.
 */
function foreignHostOrOrigin(req: IncomingMessage, allowed: readonly string[]): string | undefined {
  if (allowed.length === 0) return undefined;
  const host = req.headers.host;
  if (!host || !allowed.includes(hostnameOf(`http://${host}`) ?? '')) return `Host header not allowed: ${host ?? '(none)'}`;
  const origin = req.headers.origin;
  if (origin !== undefined && !allowed.includes(hostnameOf(origin) ?? '')) return `Origin not allowed: ${origin}`;
  return undefined;
}

function tokenMatches(req: IncomingMessage, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Serves MCP over Streamable HTTP at /mcp: one MCP server per session, all on one engine (one
 * database pool, one boot). Runs until SIGINT or SIGTERM, which close every session first.
 */
export async function serveHttp(config: Config, http: HttpConfig): Promise<void> {
  const log = createStderrLogger(config.logLevel);
  const engine = new ProvisioningEngine(config, log);
  const sessions = new HttpSessions({ idleTimeoutMs: http.sessionIdleTimeoutMs, maxSessions: http.maxSessions }, log);

  const openSession = async (req: IncomingMessage, res: ServerResponse) => {
    const activity = sessions.open();
    if (!activity) {
      return reject(
        res,
        503,
        `Too many sessions: all ${http.maxSessions} are busy (a request in flight or an open stream). ` +
          'Try again later, or raise the cap with --http-max-sessions / PG_WORKSPACE_HTTP_MAX_SESSIONS.',
        { 'retry-after': '5' },
      );
    }
    const server = createSessionServer({ engine, allowedProjects: config.allowedProjects, clientElsewhere: true });
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => sessions.register(activity, id, { transport, server }),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.forget(transport.sessionId);
    };
    sessions.track(activity, res);
    try {
      await server.connect(transport);
      await transport.handleRequest(req, res);
    } finally {
      sessions.settle(activity);
    }
    // Anything but a valid initialize was refused by the transport and opened no session.
    if (!transport.sessionId) await server.close();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const refused = foreignHostOrOrigin(req, http.allowedHosts);
    if (refused) return reject(res, 403, refused);
    const { pathname } = new URL(req.url ?? '/', 'http://localhost');
    if (pathname === '/healthz' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok', engine: engine.status.state, sessions: sessions.size, version: packageVersion }));
    }
    if (pathname !== '/mcp') return reject(res, 404, 'Not found: MCP is served at /mcp');
    if (http.token !== undefined && !tokenMatches(req, http.token)) {
      return reject(res, 401, 'Unauthorized: send "Authorization: Bearer <PG_WORKSPACE_HTTP_TOKEN>"', { 'www-authenticate': 'Bearer' });
    }
    const id = req.headers['mcp-session-id'];
    if (typeof id === 'string') {
      const session = sessions.get(id);
      if (!session) return reject(res, 404, 'Session not found: it ended, expired or the server restarted; initialize a new one');
      sessions.track(session.activity, res);
      return session.transport.handleRequest(req, res);
    }
    if (req.method === 'POST') return openSession(req, res);
    return reject(res, 400, 'Bad request: no Mcp-Session-Id header; POST an initialize request to open a session');
  };

  const httpServer = createHttpServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error('HTTP request failed', { error: String(error) });
      if (!res.headersSent) reject(res, 500, 'Internal error');
      else res.end();
    });
  });

  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { reason, sessions: sessions.size });
    httpServer.close();
    try {
      // Closing a session ends its open SSE streams, so no client is left waiting.
      await sessions.closeAll();
      httpServer.closeAllConnections();
      await engine.close();
    } catch (error) {
      log.error('error during shutdown', { error: String(error) });
    }
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('unhandledRejection', (error) => log.error('unhandled rejection', { error: String(error) }));

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(http.port, http.host, () => resolve());
  });
  // One engine for every session: its boot starts now, not with the first client.
  engine.start();
  const { port } = httpServer.address() as AddressInfo;
  const host = http.host.includes(':') ? `[${http.host}]` : http.host;
  log.info('serving MCP over HTTP', {
    url: `http://${host}:${port}/mcp`,
    version: packageVersion,
    database: config.databaseUrl ? 'postgres' : config.dataDir,
    token: http.token !== undefined,
    allowed_hosts: http.allowedHosts,
  });
}
