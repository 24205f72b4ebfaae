import type { ServerResponse } from 'node:http';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Logger } from '../logger.js';

export interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
}

/** Requests in flight (an open GET SSE stream is one) and when the last one began or ended. */
export interface Activity {
  inFlight: number;
  lastActive: number;
}

interface LiveSession extends Session {
  id: string;
  activity: Activity;
}

/**
 * The HTTP server's sessions, bounded in time and number. A client that vanishes without a
 * DELETE (laptop closed, IDE crashed) would otherwise leave its McpServer and transport behind
 * for good, and any authorized client could open sessions without end. A session is busy while
 * one of its requests is in flight: a client listening on a GET SSE stream is never idle, and a
 * dead peer's stream ends once the SDK's keep-alive writes to it fail.
 */
export class HttpSessions {
  private readonly live = new Map<string, LiveSession>();
  /** Sessions whose initialize is in flight: they hold a place under the cap before they have an id. */
  private readonly opening = new Set<Activity>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: { idleTimeoutMs: number; maxSessions: number },
    private readonly log: Logger,
  ) {
    // Checking a few times per timeout keeps expiry within a quarter of it past due.
    const every = Math.min(60_000, Math.max(250, limits.idleTimeoutMs / 4));
    this.sweeper = setInterval(() => this.expireIdle(), every).unref();
  }

  get size(): number {
    return this.live.size;
  }

  get(id: string): LiveSession | undefined {
    return this.live.get(id);
  }

  /**
   * A place for a session about to initialize; at the cap it closes the least recently active
   * idle session to make room. Undefined: every session is busy.
   */
  open(): Activity | undefined {
    if (this.live.size + this.opening.size >= this.limits.maxSessions) {
      let oldest: LiveSession | undefined;
      for (const session of this.live.values()) {
        if (session.activity.inFlight === 0 && (!oldest || session.activity.lastActive < oldest.activity.lastActive)) oldest = session;
      }
      if (!oldest) return undefined;
      this.close(oldest, 'session evicted: the server is at its session cap', {});
    }
    const activity: Activity = { inFlight: 0, lastActive: performance.now() };
    this.opening.add(activity);
    return activity;
  }

  /** The transport accepted the initialize: the session is live under its id. */
  register(activity: Activity, id: string, session: Session): void {
    this.opening.delete(activity);
    this.live.set(id, { ...session, id, activity });
  }

  /** The initialize is answered; if the transport refused it, its place is free again. */
  settle(activity: Activity): void {
    this.opening.delete(activity);
  }

  /** The session's transport closed (DELETE, eviction, shutdown). */
  forget(id: string): void {
    this.live.delete(id);
  }

  /** The session is busy until this response closes (finished, or its connection gone). */
  track(activity: Activity, res: ServerResponse): void {
    activity.inFlight += 1;
    activity.lastActive = performance.now();
    res.once('close', () => {
      activity.inFlight -= 1;
      activity.lastActive = performance.now();
    });
  }

  /** Stops the sweeper and closes every session, ending their open streams. */
  async closeAll(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.live.values()].map((session) => session.server.close()));
  }

  private expireIdle(): void {
    const now = performance.now();
    for (const session of this.live.values()) {
      const idleMs = now - session.activity.lastActive;
      if (session.activity.inFlight === 0 && idleMs > this.limits.idleTimeoutMs) {
        this.close(session, 'session expired: idle past the timeout', { idle_s: Math.round(idleMs / 1000) });
      }
    }
  }

  /** Out of the map at once (its place is free now); the McpServer closes its transport after. */
  private close(session: LiveSession, message: string, fields: Record<string, unknown>): void {
    this.live.delete(session.id);
    this.log.info(message, { session: session.id, ...fields });
    session.server.close().catch((error: unknown) => this.log.error('closing a session failed', { session: session.id, error: String(error) }));
  }
}
