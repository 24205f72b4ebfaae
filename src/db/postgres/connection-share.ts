/**
 * The connections one server holds over the databases its workspaces are spread over
 * (src/databases/): each database has a pool of its own, and together they keep to the server's
 * pool size. A pool about to open a connection while the server's pools hold that many already
 * first closes another database's idle one (parked-connections.ts), so a server that served a
 * hundred databases lately keeps at most its pool size open, not a warm connection in each.
 * Calls in flight in several databases at once are bounded by each database's pool only: one
 * call never waits for another database's.
 */
/** A server's pool size on PostgreSQL unless configured (EngineConfig.maxConnections). */
export const DEFAULT_MAX_CONNECTIONS = 10;

export interface SharingPool {
  /** Connections open (lent out or kept idle). */
  open(): number;
  /** Closes the least recently used idle connection; false when there is none. */
  closeIdle(): boolean;
}

export class ConnectionShare {
  readonly #pools = new Set<SharingPool>();

  constructor(readonly max: number) {}

  /** Counts `pool` in until the returned function is called (on close). */
  join(pool: SharingPool): () => void {
    this.#pools.add(pool);
    return () => this.#pools.delete(pool);
  }

  /** Before `pool` opens a connection: at the server's total, another database's idle one closes. */
  makeRoom(pool: SharingPool): void {
    let open = 0;
    for (const p of this.#pools) open += p.open();
    if (open < this.max) return;
    for (const p of this.#pools) if (p !== pool && p.closeIdle()) return;
  }
}
