import type pg from 'pg';

/**
 * The idle connections a server keeps between calls, each under the workspace whose agent code
 * it ran (undefined: only the server's own statements). A connection never runs two workspaces'
 * agent code (postgres-database.ts, #connectFor), and pg-pool's idle list hands out whichever
 * connection came back last, with no choice: a server passing between workspaces closed that one
 * and opened another on nearly every call (about 5-20 ms each). Kept here instead, a call finds
 * its workspace's own connection again.
 *
 * One per workspace (the one warm connection a server kept, per workspace served lately; a
 * burst's extras still close at once), at most `capacity()`, the oldest closing for a newer. Every
 * connection kept is one of pg-pool's, lent out, so the pool's `max` bounds the kept and the busy
 * together. All but the last close after `idleMs` unused; the last stays while `keepLast()` says
 * so (the database has room for it, connection-room.ts).
 */
export class ParkedConnections {
  /** Oldest first: a Map keeps insertion order, and a connection parked again goes to the end. */
  readonly #parked = new Map<pg.PoolClient, { ranAgentOf: string | undefined; timer: NodeJS.Timeout; onError: (error: Error) => void }>();

  constructor(
    private readonly idleMs: number,
    private readonly keepLast: () => boolean,
    private readonly capacity: () => number,
  ) {}

  get size(): number {
    return this.#parked.size;
  }

  /** Keeps `client` unless one of the same workspace is kept already; false: the caller closes it. */
  park(client: pg.PoolClient, ranAgentOf: string | undefined): boolean {
    for (const kept of this.#parked.values()) if (kept.ranAgentOf === ranAgentOf) return false;
    while (this.#parked.size > 0 && this.#parked.size >= this.capacity()) this.takeOldest()?.release(true);
    // A kept connection the server ends (restart, pg_terminate_backend) is dropped, not lent out.
    const onError = (error: Error) => {
      if (this.#unpark(client)) client.release(error);
    };
    client.on('error', onError);
    this.#parked.set(client, { ranAgentOf, timer: this.#idleTimer(client), onError });
    return true;
  }

  /** The connection kept for `workspace`'s agent code, else one that never ran any. */
  takeFor(workspace: string): pg.PoolClient | undefined {
    return this.#takeNewest((ran) => ran === workspace) ?? this.#takeNewest((ran) => ran === undefined);
  }

  /** For the server's own statements, which may run on any: one that never ran agent code first. */
  takeAny(): pg.PoolClient | undefined {
    return this.#takeNewest((ran) => ran === undefined) ?? this.#takeNewest(() => true);
  }

  /** The least recently used, to close when the pool is full. */
  takeOldest(): pg.PoolClient | undefined {
    const [oldest] = this.#parked.keys();
    return oldest && this.#unpark(oldest) ? oldest : undefined;
  }

  /** Every kept connection, no longer kept. */
  takeAll(): pg.PoolClient[] {
    const all = [...this.#parked.keys()];
    for (const client of all) this.#unpark(client);
    return all;
  }

  #takeNewest(wanted: (ranAgentOf: string | undefined) => boolean): pg.PoolClient | undefined {
    let newest: pg.PoolClient | undefined;
    for (const [client, kept] of this.#parked) if (wanted(kept.ranAgentOf)) newest = client;
    return newest && this.#unpark(newest) ? newest : undefined;
  }

  #unpark(client: pg.PoolClient): boolean {
    const kept = this.#parked.get(client);
    if (!kept) return false;
    clearTimeout(kept.timer);
    client.removeListener('error', kept.onError);
    this.#parked.delete(client);
    return true;
  }

  #idleTimer(client: pg.PoolClient): NodeJS.Timeout {
    return setTimeout(() => {
      const kept = this.#parked.get(client);
      if (!kept) return;
      if (this.#parked.size === 1 && this.keepLast()) kept.timer = this.#idleTimer(client);
      else if (this.#unpark(client)) client.release(true);
    }, this.idleMs);
  }
}
