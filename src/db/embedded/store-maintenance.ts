import type { Logger } from '../../logger.js';
import type { Queryable } from '../database.js';
import type { Mutex } from '../mutex.js';
import { AFTER_TABLE_CODE } from '../pipeline.js';
import { sqlState } from '../sql-errors.js';
import { undoTableCodeGrants } from '../table-code-grants.js';

/** How long the embedded store must be idle before it maintains itself (PG_WORKSPACE_MAINTENANCE_IDLE_MS). */
export const DEFAULT_MAINTENANCE_IDLE_MS = 1000;

/**
 * PostgreSQL's autovacuum defaults: a table is vacuumed once its dead rows exceed 50 + 20% of
 * its rows or the rows inserted since its last vacuum 1000 + 20% (for the visibility map), and
 * analyzed once the rows changed since its last analyze exceed 50 + 10%. A table never vacuumed
 * nor analyzed has reltuples -1: counted as empty, as autovacuum does.
 */
const TABLES_DUE = `
SELECT pg_catalog.format('%I.%I', s.schemaname, s.relname) AS tbl,
       CASE WHEN c.relowner <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
            THEN pg_catalog.pg_get_userbyid(c.relowner)::text END AS owner,
       s.n_dead_tup > 50 + 0.2 * r.n OR s.n_ins_since_vacuum > 1000 + 0.2 * r.n AS vacuum,
       s.n_mod_since_analyze > 50 + 0.1 * r.n AS analyze
  FROM pg_catalog.pg_stat_user_tables s
  JOIN pg_catalog.pg_class c ON c.oid = s.relid
 CROSS JOIN LATERAL (SELECT greatest(c.reltuples, 0) AS n) r
 WHERE s.n_dead_tup > 50 + 0.2 * r.n OR s.n_ins_since_vacuum > 1000 + 0.2 * r.n OR s.n_mod_since_analyze > 50 + 0.1 * r.n
 ORDER BY s.n_dead_tup + s.n_mod_since_analyze DESC`;

/**
 * PostgreSQL sends a backend's table statistics at most once a second, when it goes idle; PGlite
 * has no timer to send the rest later. Forced here, in a statement of its own (the flush happens
 * as it ends), so the next one reads every change made so far.
 */
const FLUSH_STATISTICS = 'SELECT pg_catalog.pg_stat_force_next_flush()';

interface TableDue {
  tbl: string;
  /** The table's owner, unless it is the session's own role. */
  owner: string | null;
  vacuum: boolean;
  analyze: boolean;
}

/**
 * A store in constant use (calls back to back, never idle for `idleMs`) is still maintained: once
 * this many idle intervals passed since the last pass, the next moment nobody holds or waits for
 * the session will do.
 */
const OVERDUE_AFTER_INTERVALS = 10;

const commandFor = (t: TableDue) => (t.vacuum ? `VACUUM${t.analyze ? ' (ANALYZE)' : ''} ${t.tbl}` : `ANALYZE ${t.tbl}`);

/**
 * The embedded store's autovacuum, which PGlite lacks: without it a table an agent keeps
 * updating grows without bound and the planner never gets statistics. When nobody has used (or
 * waited for) the session for `idleMs`, and someone used it since the last pass, the tables past
 * autovacuum's thresholds are vacuumed and analyzed, one per turn on the session and only while
 * nobody else wants it: a call arriving meanwhile waits for one table at most, and the pass
 * resumes at the next idle moment. Each statement runs under a timeout, ended as any embedded
 * statement is (the store reopens, which also clears the statistics that made the table due). A store never idle that long is maintained between two calls
 * every OVERDUE_AFTER_INTERVALS idle intervals. Taking turns on the session's mutex also keeps it out of a
 * socket client's open transaction (the client holds its turn until the transaction ends), as
 * VACUUM must be.
 */
export class StoreMaintenance {
  readonly #timer: NodeJS.Timeout;
  /** The session's turn count when the last pass finished: unchanged, there is nothing new to look at. */
  #seen = -1;
  #pass: Promise<void> | undefined;
  #lastPass = performance.now();
  #stopped = false;

  constructor(
    private readonly turns: Mutex,
    private readonly session: Queryable,
    /**
     * Claims the session for table code of any workspace (session-claims.ts), in the caller's
     * turn: one holding a workspace's custom settings is replaced first, since an index expression
     * could read them (current_setting) into another workspace's index.
     */
    private readonly claim: () => Promise<void>,
    private readonly idleMs: number,
    private readonly log: Logger,
    /** Each VACUUM and ANALYZE's statement timeout: a table's index expressions are its owner's code. */
    private readonly timeoutMs: number,
  ) {
    this.#timer = setInterval(() => this.#tick(), Math.max(5, Math.floor(idleMs / 2)));
    this.#timer.unref();
    // Between two calls back to back: the moment an overdue pass can have.
    turns.onFree(() => this.#tick());
  }

  /** Stops looking, and waits for a table being maintained now. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#pass;
  }

  #tick(): void {
    if (this.#pass || this.#stopped || this.turns.turns === this.#seen || this.turns.pending > 0) return;
    const overdue = performance.now() - this.#lastPass >= this.idleMs * OVERDUE_AFTER_INTERVALS;
    if (!overdue && this.turns.idleFor() < this.idleMs) return;
    this.#pass = this.#maintain(overdue)
      .catch((error: unknown) => {
        // Tried again once the session has been used again, not at every tick.
        this.#seen = this.turns.turns;
        this.log.warn('embedded store maintenance failed', { error: (error as Error).message });
      })
      .finally(() => {
        this.#pass = undefined;
        this.#lastPass = performance.now();
      });
  }

  /** Overdue, the first table is maintained even if a call is already waiting: else it never would be. */
  async #maintain(overdue: boolean): Promise<void> {
    const due = await this.turns.run(async () => {
      await this.session.query(FLUSH_STATISTICS);
      return this.session.query<TableDue>(TABLES_DUE);
    });
    for (const [i, table] of due.entries()) {
      if (this.#stopped || (this.turns.pending > 0 && !(overdue && i === 0))) return;
      const started = performance.now();
      // In the same turn: what the table's code (index expressions) left on the session goes with it.
      // Under a timeout: that code is a workspace's, and an index expression sleeping in ANALYZE
      // held the one session, so every workspace's calls, for as long as it chose.
      await this.turns.run(async () => {
        await this.claim();
        await this.session.query(`SELECT pg_catalog.set_config('statement_timeout', $1, false)`, [String(this.timeoutMs)]);
        try {
          await this.session.exec(commandFor(table));
        } finally {
          await this.session.exec(`RESET statement_timeout; ${AFTER_TABLE_CODE}`);
          // And the grants and role settings it made, which no sandbox call saw (table-code-grants.ts).
          const undone = table.owner === null ? [] : await undoTableCodeGrants(this.session, table.owner);
          if (undone.length > 0) this.log.warn("embedded store maintenance undid what a table's code granted", { command: commandFor(table), undone });
        }
      }).then(
        () => this.log.debug('embedded store maintenance', { command: commandFor(table), ms: Math.round(performance.now() - started) }),
        (error: unknown) => {
          // Dropped since the statistics were read: nothing to do.
          if (sqlState(error) !== '42P01') this.log.warn('embedded store maintenance failed', { command: commandFor(table), error: (error as Error).message });
        },
      );
    }
    this.#seen = this.turns.turns;
  }
}
