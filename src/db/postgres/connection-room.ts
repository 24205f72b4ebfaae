import { ConnectionLostError, pgError } from '../sql-errors.js';

/**
 * Every stdio client starts a server of its own, each with its own pool, and they share the
 * database's connection slots. A connection kept open between calls (the warm one, which makes
 * the call after a pause as fast as a warm call) is a slot no other server can have: 16 servers
 * keeping one each starved the rest of a `max_connections = 10` server for good. So a server
 * keeps its warm connection only while PostgreSQL reports enough free slots besides it
 * (`hasRoom`), looks again every `ROOM_CHECK_MS` while it keeps one, and a call that finds no
 * free slot waits for one, a bounded and jittered while (`slotWaits`), rather than failing at once.
 */

/** How often a server holding a warm connection asks whether others need the slot. */
export const ROOM_CHECK_MS = 5_000;

/**
 * Free connection slots for this role, as PostgreSQL counts them: a superuser may use every
 * slot, others not the reserved ones (`reserved_connections` is PostgreSQL 16's; NULL before).
 * A role without pg_read_all_stats sees other roles' sessions with a NULL backend_type but
 * their database: counted too (an autovacuum worker among them errs on the side of room for others).
 */
export const FREE_SLOTS_SQL = `
SELECT s.slots::int AS slots,
       (s.slots - (SELECT count(*) FROM pg_catalog.pg_stat_activity
                    WHERE backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL)))::int AS free
  FROM (SELECT current_setting('max_connections')::int
               - CASE WHEN r.rolsuper THEN 0
                      ELSE current_setting('superuser_reserved_connections')::int
                           + coalesce(current_setting('reserved_connections', true)::int, 0)
                 END AS slots
          FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) s`;

/**
 * The port PostgreSQL sees this connection come from: the client's own when it connects directly
 * (NULL for both over a unix socket), a pooler's or proxy's (PgBouncer) when one is in between.
 * Behind one, the slots others wait for are the pooler's, which PostgreSQL does not report.
 */
export const CLIENT_PORT_SQL = 'SELECT pg_catalog.inet_client_port() AS port';

/** Directly connected: PostgreSQL sees the port this end of the connection has. */
export function isDirect(seenPort: number | null, localPort: number | undefined): boolean {
  return seenPort === (localPort ?? null);
}

export interface SlotCount {
  slots: number;
  free: number;
}

/** Room for a warm connection: 2 slots, or a tenth of them, stay free for other clients besides it. */
export function hasRoom({ slots, free }: SlotCount): boolean {
  return free >= Math.max(2, Math.ceil(slots / 10));
}

/**
 * The connection was refused for want of a slot: PostgreSQL's "too many clients" (53300), or
 * PgBouncer's full pool or client limit, which it reports as protocol violations (08P01) told
 * apart only by their words.
 */
export function isOutOfSlots(error: unknown): boolean {
  const e = pgError(error);
  if (!e) return false;
  return e.code === '53300' || (e.code === '08P01' && /^(query_wait_timeout|no more connections allowed)/.test(e.message));
}

/** No slot came free while the call waited: what happened and what to do about it. */
export class NoFreeConnectionError extends ConnectionLostError {
  override name = 'NoFreeConnectionError';
}

/**
 * Jittered, doubling pauses (from 50 ms up to 1 s) until `waitMs` has passed; the jitter keeps
 * servers refused together from all coming back together.
 */
export async function* slotWaits(waitMs: number, random: () => number = Math.random): AsyncGenerator<number> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) return;
    const pause = Math.min(left, Math.min(1_000, 50 * 2 ** attempt) * (0.5 + random()));
    await new Promise((resolve) => setTimeout(resolve, pause));
    yield attempt + 1;
  }
}
