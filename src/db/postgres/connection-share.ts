/**
 * The connections one server holds over the databases its workspaces are spread over
 * (src/databases/): each database has a pool of its own, and together they keep to the server's
 * pool size. A pool about to open a connection while the server's pools hold that many already
 * first closes another database's idle one (parked-connections.ts); when every connection is in
 * use, the call waits for one of them to come back, as it would in a single pool. The wait is
 * bounded (the pool's connect wait): past it the call opens its connection anyway, so calls that
 * each hold one connection and need a second (an install holds its lock on one) cannot deadlock.
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
  readonly #waiting = new Set<() => void>();
  /** Connections let open (makeRoom returned true) that their pool may not count yet. */
  #opening = 0;

  constructor(readonly max: number) {}

  /** Counts `pool` in until the returned function is called (on close). */
  join(pool: SharingPool): () => void {
    this.#pools.add(pool);
    return () => {
      this.#pools.delete(pool);
      this.freed();
    };
  }

  /**
   * Before `pool` opens a connection: true when it may (under the server's total, or another
   * database's idle connection closed to make room, or `deadline` passed); false after waiting
   * for a connection to come back or close, when the caller should look at its own idle ones
   * again. A single pool is bounded by its own size and never waits here. After true, the caller
   * calls `opened()` once its connection is made (or failed): until then it counts as open.
   */
  async makeRoom(pool: SharingPool, deadline: number): Promise<boolean> {
    if (this.#pools.size > 1 && !this.#room(pool) && deadline > Date.now()) {
      await this.#freedOr(deadline);
      return false;
    }
    this.#opening++;
    return true;
  }

  /** The connection makeRoom let open is made, or failed: its pool counts it from now on. */
  opened(): void {
    this.#opening--;
    this.freed();
  }

  #room(pool: SharingPool): boolean {
    let open = this.#opening;
    for (const p of this.#pools) open += p.open();
    if (open < this.max) return true;
    for (const p of this.#pools) if (p !== pool && p.closeIdle()) return true;
    return false;
  }

  #freedOr(deadline: number): Promise<void> {
    const left = deadline - Date.now();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, left);
      this.#waiting.add(done);
    });
  }

  /** A call gave its connection back (kept idle or closed), or a connection closed: waiting calls look again. */
  freed(): void {
    for (const wake of [...this.#waiting]) wake();
  }
}
