import pLimit from 'p-limit';
import pg from 'pg';
import pgvector from 'pgvector';
import { inTransaction, SessionDatabase, type LockHolder, type LockTry, type PipelineOutcome, type PipelineStep, type Queryable } from '../database.js';
import { boundedStream } from '../bounded-messages.js';
import { CLIENT_PORT_SQL, FREE_SLOTS_SQL, hasRoom, isDirect, isOutOfSlots, NoFreeConnectionError, ROOM_CHECK_MS, slotWaits, type SlotCount } from './connection-room.js';
import { DEFAULT_MAX_CONNECTIONS, type ConnectionShare, type SharingPool } from './connection-share.js';
import { ParkedConnections } from './parked-connections.js';
import { asConnectionBroken } from './pg-connection-errors.js';
import { afterFailedPipeline, PipelineCollector, writePipeline, type PipelineMessage, type PipelineWriter } from '../pipeline.js';
import { quoteIdent } from '../identifiers.js';
import { CLAIM_ATTEMPTS, claimConnection, CONNECTION_CLAIM_ATTEMPTS, claimedIdentity, claimSession, isSessionTaken, refusedAtClaim, SessionUnavailableError, withoutClaim, type ClaimStep } from '../session-claims.js';
import { describePgError } from '../sql-errors.js';
import { StatementCancelledError } from '../statement-cancelled.js';

const APPLICATION_NAME = 'pg-workspace-mcp';

/**
 * Agents call tools seconds to minutes apart: with pg's 10 s default idle timeout the first call
 * after a pause paid a new connection (29-79 ms against ~1 ms warm). While the database has room
 * (connection-room.ts), one connection is kept warm for good, and one per other workspace served
 * lately (parked-connections.ts) for this long unused; an extra one a burst opened closes as soon
 * as no call of this server waits for it, since it is a slot (behind PgBouncer in session mode, a
 * server connection) other servers may be waiting for. TCP keepalive stops middleboxes from
 * dropping the ones kept.
 */
const EXTRA_IDLE_TIMEOUT_MS = 10_000;

/**
 * A connection is replaced after this many checkouts. A PostgreSQL backend keeps in its caches
 * every relation, type and function it has touched, and on every catalog change (its own DDL or
 * any other backend's) walks some of those caches whole: a connection that had served a thousand
 * workspaces ran each DDL statement several times slower. A new connection costs a few
 * milliseconds, once in this many calls.
 */
const MAX_USES = 200;
const KEEPALIVE_DELAY_MS = 30_000;

/**
 * Connections of its own (runAsRole: VACUUM) a server opens at once, besides its pool. Each
 * workspace may run a few calls at once, and a VACUUM waiting for a lock its own workspace holds
 * in another call holds its connection for the statement timeout: four workspaces of one agent
 * held twelve such connections, and enough of them every slot of the database, for everyone.
 */
const OWN_CONNECTIONS_AT_ONCE = 2;

export interface PostgresOptions {
  connectionString: string;
  /** The installer pins one session for its lock while phases run on others: never below 2. */
  maxConnections?: number;
  /** How long a call that finds no free connection slot waits for one before it fails (default: not at all). */
  connectWaitMs?: number;
  /**
   * The server's connection slots are shared with other clients (PostgreSQL, a pooler): keep
   * idle connections only while there is room for them, and only one behind a pooler. Off for
   * the embedded store's socket, whose owner queues every client on its one session anyway.
   */
  sharedSlots?: boolean;
  /**
   * How a call that runs agent code claims its session (session-claims.ts): 'connection' (a
   * PostgreSQL server: a pooled connection serves one workspace), or 'session' (the embedded
   * store's socket: its owner's one session, replaced by the owner when it is refused).
   */
  claims?: 'connection' | 'session';
  /**
   * Keep the warm connection only this long after the last call (default: while there is room):
   * a member database (databases/member-databases.ts) a server may not call again for hours.
   */
  warmForMs?: number;
  /** The server's pools over every database its workspaces are spread over, kept to its pool size together. */
  share?: ConnectionShare;
}

/** Which workspace's agent code a pooled client ran: its project id, and the identity its claim returned ('0' when unknown). */
interface RanAgentOf {
  projectId: string;
  identity: string;
}

/** What a claimed call's `use` returns when its claim was refused (nothing after it ran). */
const REFUSED = Symbol('refused');

/** Thrown out of a checkout whose claim was refused on a PostgreSQL connection: the client is discarded. */
class ClaimRefused extends Error {}

/** A real PostgreSQL server through a `pg` Pool. */
export class PostgresDatabase extends SessionDatabase {
  readonly description: string;
  readonly #pool: pg.Pool;
  readonly #connectionString: string;
  /** Parsers for pgvector's types by OID, filled once the extension exists; read by every client of the pool. */
  readonly #parsers = new Map<number, (value: string) => unknown>();
  readonly #ownConnections = pLimit(OWN_CONNECTIONS_AT_ONCE);
  readonly #connectWaitMs: number;
  readonly #maxConnections: number;
  /** Keeping a connection between calls: true while the database has room for it. */
  #warm = true;
  #lastRoomCheck = 0;
  readonly #roomTimer: NodeJS.Timeout | undefined;
  /** The workspace whose agent code each pooled client has run (see #connectFor). */
  readonly #ranAgentOf = new WeakMap<pg.Client, RanAgentOf>();
  readonly #claims: 'connection' | 'session';
  /** Calls each client served: pg-pool counts only its own checkouts, and a kept client is lent again without one. */
  readonly #uses = new WeakMap<pg.Client, number>();
  /** Clients a cancel request was sent for (pipeline's signal): closed when given back. */
  readonly #cancelled = new WeakSet<pg.Client>();
  /**
   * Whether PostgreSQL itself is at the other end (learnt on the first connection when slots are
   * shared). Behind a pooler, whose pool others wait for and PostgreSQL does not report, one idle
   * connection is kept, as ever, not one per workspace; a call of another workspace closes it
   * before opening one, as it may hold the pooler's last server connection.
   */
  #direct: boolean | undefined;
  /** Idle clients, kept lent out of pg-pool (whose idle list stays empty) so that a call can choose among them. */
  readonly #parked = new ParkedConnections(EXTRA_IDLE_TIMEOUT_MS, () => this.#keepsWarm(), () => (this.#direct === false ? 1 : this.#maxConnections));
  readonly #warmForMs: number | undefined;
  #lastCall = Date.now();
  readonly #sharing: SharingPool = {
    open: () => this.#pool.totalCount,
    closeIdle: () => {
      const client = this.#parked.takeOldest();
      client?.release(true);
      return client !== undefined;
    },
  };
  readonly #share: ConnectionShare | undefined;
  readonly #leaveShare: (() => void) | undefined;

  constructor(options: PostgresOptions) {
    super();
    this.#connectionString = options.connectionString;
    const parsers = this.#parsers;
    this.#connectWaitMs = options.connectWaitMs ?? 0;
    this.#maxConnections = Math.max(2, options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.#direct = options.sharedSlots ? undefined : true;
    this.#claims = options.claims ?? 'connection';
    this.#warmForMs = options.warmForMs;
    this.#share = options.share;
    this.#leaveShare = options.share?.join(this.#sharing);
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      max: this.#maxConnections,
      // Kept connections are #parked's: anything idle in pg-pool is what slipped past it.
      idleTimeoutMillis: EXTRA_IDLE_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
      application_name: APPLICATION_NAME,
      Client: BoundedClient,
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          (format !== 'binary' && parsers.get(oid)) || pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client losing its server (restart, failover) must not crash the process;
    // the next query gets a fresh connection.
    this.#pool.on('error', () => undefined);
    // A connection closed: a call of another database waiting for the server's total may open one.
    this.#pool.on('remove', () => this.#share?.freed());
    // And no client may ever emit an 'error' nobody hears: pg-pool listens only while a client
    // is idle and #checkout while it is lent, and a burst of terminated sessions still found a
    // moment with neither (seen once in three runs). A client that failed is not queryable, so
    // its next use fails as a connection failure and it is discarded.
    this.#pool.on('connect', (client) => client.on('error', () => undefined));
    this.description = redactPassword(options.connectionString);
    if (options.sharedSlots) {
      // A server holding a warm connection between calls looks now and then whether others need the slot.
      this.#roomTimer = setInterval(() => void this.#checkIdleRoom(), ROOM_CHECK_MS).unref();
    }
  }

  withSession<T>(fn: (session: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    if (agentOf === undefined) return this.#checkout((client, lost) => fn(sessionOf(client, lost)));
    return this.#claimed(agentOf, async (client, claim, lost) => {
      let identity: string | undefined;
      try {
        const { rows } = await client.query<{ claimed: unknown }>(`${claim.sql} AS claimed`, [...claim.params]);
        identity = rows[0]?.claimed == null ? undefined : String(rows[0].claimed);
      } catch (error) {
        if (isSessionTaken(error)) return REFUSED;
        throw error;
      }
      this.#claimedBy(client, agentOf, identity);
      return fn(sessionOf(client, lost));
    });
  }

  /**
   * Through the embedded store's socket, whose owner keeps its one session for a client only
   * until the client's transaction ends, the claim goes inside the transaction: a claim of its own
   * would let another client's call run between it and `fn`.
   */
  override transaction<T>(fn: (tx: Queryable) => Promise<T>, agentOf?: string): Promise<T> {
    if (agentOf === undefined || this.#claims === 'connection') return super.transaction(fn, agentOf);
    return this.#claimed(agentOf, async (client, claim, lost) => {
      const session = sessionOf(client, lost);
      let refused = false;
      try {
        return await inTransaction(session, async () => {
          try {
            await client.query(claim.sql, [...claim.params]);
          } catch (error) {
            refused = isSessionTaken(error);
            throw error;
          }
          return fn(session);
        });
      } catch (error) {
        if (refused) return REFUSED;
        throw error;
      }
    });
  }

  /**
   * Runs `use` on a client claimed for `agentOf`'s agent code (session-claims.ts): `use` sends
   * `claim` before anything else and returns REFUSED when it is refused, and the call is made
   * again: on PostgreSQL on another connection (the refused one is discarded), on the embedded
   * store's socket on the same one, whose session its owner replaces once the exchange ends
   * (ended early, the owner would see the client leave before the exchange's end).
   */
  async #claimed<T>(
    agentOf: string,
    use: (client: pg.PoolClient, claim: ClaimStep, lost: () => Error | undefined) => Promise<T | typeof REFUSED>,
  ): Promise<T> {
    const byConnection = this.#claims === 'connection';
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.#checkout(async (client, lost) => {
          const ran = this.#ranAgentOf.get(client);
          const claim = byConnection ? claimConnection(agentOf, ran?.identity) : claimSession(agentOf);
          // Until its claim answers, the client may have run this workspace's code as of an unknown identity.
          if (byConnection) this.#ranAgentOf.set(client, { projectId: agentOf, identity: '0' });
          const value = await use(client, claim, lost);
          if (value === REFUSED && byConnection) throw new ClaimRefused();
          return value;
        }, byConnection ? agentOf : undefined);
        if (result !== REFUSED) return result;
      } catch (error) {
        if (!(error instanceof ClaimRefused)) throw error;
      }
      const tries = byConnection ? CONNECTION_CLAIM_ATTEMPTS : CLAIM_ATTEMPTS;
      if (attempt === tries) throw new SessionUnavailableError(tries);
    }
  }

  #claimedBy(client: pg.PoolClient, projectId: string, identity: string | undefined): void {
    if (this.#claims === 'connection') this.#ranAgentOf.set(client, { projectId, identity: identity ?? '0' });
  }

  /**
   * A pooled client for `use`. pg-pool takes its own 'error' listener off a client it hands
   * out: a server that ends the session (restart, pg_terminate_backend) while no statement runs
   * on it, between statements or while the install-lock waiter sleeps, would then emit an
   * 'error' nobody hears, which ends the process. Heard here, it fails the session's next
   * statement and discards the client.
   */
  async #checkout<T>(use: (client: pg.PoolClient, lost: () => Error | undefined) => Promise<T>, agentOf?: string): Promise<T> {
    this.#lastCall = Date.now();
    const client = await this.#connectFor(agentOf);
    const uses = (this.#uses.get(client) ?? 0) + 1;
    this.#uses.set(client, uses);
    let lost: Error | undefined;
    const onError = (error: Error) => {
      lost ??= error;
    };
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      return await use(client, () => lost);
    } catch (error) {
      if (!isOrdinarySqlError(error)) broken = error as Error;
      // PgBouncer in session mode gives a new connection its server at the first statement.
      if (isOutOfSlots(error)) throw this.#noFreeSlot(error, 'PgBouncer waited its query_wait_timeout');
      throw asConnectionBroken(error);
    } finally {
      client.removeListener('error', onError);
      const failed = lost ?? broken;
      if (failed || uses >= MAX_USES || this.#cancelled.has(client)) client.release(failed ?? true);
      // A call of this server waits for a connection: handed to it (#connectFor looks whose code it ran).
      else if (this.#pool.waitingCount > 0) client.release();
      else if (this.#warm) this.#park(client);
      else void this.#releaseCold(client);
      this.#share?.freed();
    }
  }

  /** Whether the last idle connection stays: the database has room, and (warmForMs) it was called lately. */
  #keepsWarm(): boolean {
    return this.#warm && (this.#warmForMs === undefined || Date.now() - this.#lastCall < this.#warmForMs);
  }

  #park(client: pg.PoolClient): void {
    if (!this.#parked.park(client, this.#ranAgentOf.get(client)?.projectId)) client.release(true);
  }

  /**
   * A pooled client for `agentOf`'s agent code (any client when undefined): never one that ran
   * another workspace's. Its custom settings' placeholders, which PostgreSQL can neither list nor
   * remove, would otherwise tell that workspace's agent what another's set
   * (`current_setting('x.y', true)` is '' for one, NULL for none): a covert channel. So the
   * workspace's own kept client is taken, else one that never ran agent code, else a new one;
   * when the pool is full, the least recently used client kept for another workspace is closed
   * to make room. The server's own statements use any client. Spread over databases, a new
   * client also waits its turn under the server's pool size over all of them (connection-share.ts).
   */
  async #connectFor(agentOf: string | undefined): Promise<pg.PoolClient> {
    const deadline = Date.now() + this.#connectWaitMs;
    for (;;) {
      const parked = agentOf === undefined ? this.#parked.takeAny() : this.#parked.takeFor(agentOf);
      if (parked) return parked;
      if (this.#direct === false || this.#pool.totalCount >= this.#maxConnections) this.#parked.takeOldest()?.release(true);
      if (!this.#share || (await this.#share.makeRoom(this.#sharing, deadline))) break;
    }
    try {
      return await this.#newClientFor(agentOf);
    } finally {
      this.#share?.opened();
    }
  }

  async #newClientFor(agentOf: string | undefined): Promise<pg.PoolClient> {
    // A client a finishing call handed on may have run another workspace's code: closed, the next taken.
    for (;;) {
      const client = await this.#connect();
      if (this.#direct === undefined) this.#direct = await this.#isDirect(client);
      const ran = this.#ranAgentOf.get(client)?.projectId;
      if (agentOf === undefined || ran === undefined || ran === agentOf) return client;
      client.release(true);
    }
  }

  /** A pooled client; when the database has no free slot, tries again a bounded, jittered while. */
  async #connect(): Promise<pg.PoolClient> {
    const started = Date.now();
    let waits: AsyncGenerator<number> | undefined;
    for (;;) {
      try {
        return await this.#pool.connect();
      } catch (error) {
        if (!isOutOfSlots(error)) throw asConnectionBroken(error);
        this.#setWarm(false);
        waits ??= slotWaits(this.#connectWaitMs);
        if ((await waits.next()).done) throw this.#noFreeSlot(error, `this call waited ${Math.round((Date.now() - started) / 1000)} s for one`);
      }
    }
  }

  /** The first statement on a new connection: behind PgBouncer in session mode, where it waits for a server connection. */
  async #isDirect(client: pg.PoolClient): Promise<boolean> {
    try {
      const { rows } = await client.query<{ port: number | null }>(CLIENT_PORT_SQL);
      const { stream } = (client as unknown as { connection: { stream: { localPort?: number } } }).connection;
      return isDirect(rows[0]?.port ?? null, stream.localPort);
    } catch (error) {
      client.release(error as Error);
      if (isOutOfSlots(error)) throw this.#noFreeSlot(error, 'PgBouncer waited its query_wait_timeout');
      throw asConnectionBroken(error);
    }
  }

  #noFreeSlot(cause: unknown, waited: string): NoFreeConnectionError {
    return new NoFreeConnectionError(
      `The database (${this.description}) has no free connection slot: ${describePgError(cause)}; ${waited}. ` +
        'Other clients hold them all: close servers you do not use, raise max_connections (or the pooler\'s pool ' +
        'size), or put PgBouncer in transaction mode in front; then retry the call. Nothing was sent to the database.',
      { cause },
    );
  }

  /**
   * Warm: idle connections are kept between calls (#parked). Cold: a call's connection closes
   * when it is done, and the kept ones close now, giving their slots back.
   */
  #setWarm(warm: boolean): void {
    this.#warm = warm;
    if (!warm) for (const client of this.#parked.takeAll()) client.release(true);
  }

  async #roomOn(client: pg.PoolClient): Promise<boolean> {
    this.#lastRoomCheck = Date.now();
    const { rows } = await client.query<SlotCount>(FREE_SLOTS_SQL);
    return rows[0] !== undefined && hasRoom(rows[0]);
  }

  /** Cold, after a call: at most every ROOM_CHECK_MS, asks whether there is room to keep this connection. */
  async #releaseCold(client: pg.PoolClient): Promise<void> {
    if (Date.now() - this.#lastRoomCheck < ROOM_CHECK_MS) return client.release(true);
    try {
      const room = await this.#roomOn(client);
      if (!room) return client.release(true);
      this.#setWarm(true);
      this.#park(client);
    } catch (error) {
      client.release(error as Error);
    }
  }

  /** Warm and idle: gives the connections back when the database runs short of free slots. */
  async #checkIdleRoom(): Promise<void> {
    if (!this.#warm || this.#pool.waitingCount > 0) return;
    const client = this.#parked.takeAny();
    if (!client) return;
    try {
      const room = await this.#roomOn(client);
      if (room && this.#warm) return this.#park(client);
      client.release(true);
      this.#setWarm(false);
    } catch (error) {
      client.release(error as Error);
    }
  }

  /**
   * One try in one transaction: with the lock, `body` runs while it is held (the
   * transaction-scoped lock cannot leak behind PgBouncer's transaction pooling and dies with the
   * session if the process does); without, the holders are read on the same connection and the
   * transaction ends at once, giving the connection back: behind a pooler with few server
   * connections, a waiter that kept one would starve the holder, which needs two.
   */
  tryExclusive<T>(key: bigint, attempt: LockTry, body: () => Promise<T>): Promise<T | undefined> {
    return this.withSession((session) =>
      inTransaction(session, async () => {
        // A server-wide idle-in-transaction timeout would otherwise end the lock mid-work.
        await session.query('SET LOCAL idle_in_transaction_session_timeout = 0');
        const [row] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [key.toString()]);
        if (row?.locked) return attempt.decide({ locked: true }) ? body() : undefined;
        attempt.decide({ locked: false, holders: attempt.nameHolders() ? await advisoryLockHolders(session, key) : undefined });
        return undefined;
      }),
    );
  }

  lockHolders(key: bigint): Promise<LockHolder[]> {
    return advisoryLockHolders(this, key);
  }

  /**
   * On a connection of its own, closed after the statement, with the timeout as a startup option
   * (which a pooler refuses): a SET ROLE on a pooled session could land, behind a transaction
   * pooler such as PgBouncer, on a server connection other than the statement's and stay there.
   * The server is a member of the role only inside the transaction that sets it (see memberFor):
   * the session's SET ROLE outlives the transaction, the SET LOCAL back to the server's role for
   * the REVOKE does not, and PostgreSQL checks membership when a role is set, not while it is.
   */
  async runAsRole(role: string, sql: string, timeoutMs: number): Promise<void> {
    return this.#ownConnections(() => this.#runAsRole(role, sql, timeoutMs));
  }

  async #runAsRole(role: string, sql: string, timeoutMs: number): Promise<void> {
    const client = new pg.Client({
      connectionString: this.#connectionString,
      application_name: APPLICATION_NAME,
      options: `-c statement_timeout=${Math.floor(timeoutMs)}`,
    });
    const quoted = quoteIdent(role);
    client.on('error', () => undefined);
    try {
      await client.connect().catch((error: unknown) => {
        // 08P01, a protocol violation: the startup options refused, as PgBouncer refuses any.
        if ((error as { code?: unknown }).code !== '08P01') throw error;
        throw new Error(
          `This statement runs on a connection of its own started as role ${role}, and the database refused it ` +
            `(${(error as Error).message}). A pooler such as PgBouncer refuses startup options: give this server a DATABASE_URL ` +
            'that reaches PostgreSQL itself for it.',
        );
      });
      // Back to the role current before, which need not be the session's (ALTER ROLE ... SET role).
      const [{ server = '' } = {}] = (await client.query<{ server: string }>('SELECT current_user AS server')).rows;
      const self = quoteIdent(server);
      await client.query(`BEGIN; GRANT ${quoted} TO ${self}; SET ROLE ${quoted}; SET LOCAL ROLE ${self}; REVOKE ${quoted} FROM ${self}; COMMIT`);
      await client.query(sql);
    } catch (error) {
      throw asConnectionBroken(error);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * pgvector's registerTypes() asks for the OIDs on every connection it is given; they are the
   * database's, so they are looked up once here and every client parses with them.
   */
  async registerVectorTypes(): Promise<void> {
    const rows = await this.query<{ oid: number }>(
      `SELECT oid::int AS oid FROM pg_catalog.pg_type WHERE typname IN ('vector', 'halfvec', 'sparsevec')`,
    );
    for (const { oid } of rows) this.#parsers.set(oid, (value) => pgvector.fromSql(value));
  }

  pipeline(steps: readonly PipelineStep[], agentOf?: string, signal?: AbortSignal): Promise<PipelineOutcome> {
    if (agentOf === undefined) return this.#checkout((client) => this.#pipelineOn(client, steps, steps, signal));
    // The claim in the same round trip: refused, nothing after it ran.
    return this.#claimed(agentOf, async (client, claim) => {
      const outcome = await this.#pipelineOn(client, [claim, ...steps], steps, signal);
      if (refusedAtClaim(outcome)) return REFUSED;
      this.#claimedBy(client, agentOf, claimedIdentity(outcome));
      return withoutClaim(outcome);
    });
  }

  /** Sends `sent` (the caller's `steps`, perhaps after a claim) in one round trip on `client`. */
  async #pipelineOn(client: pg.PoolClient, sent: readonly PipelineStep[], steps: readonly PipelineStep[], signal?: AbortSignal): Promise<PipelineOutcome> {
    if (signal?.aborted) throw new StatementCancelledError();
    let running: PipelineSubmittable | undefined;
    const cancel = () => {
      // A cancel request arriving late would end whatever the client ran next: it is closed after this call.
      this.#cancelled.add(client);
      if (running) sendCancelRequest(this.#connectionString, client, running);
    };
    signal?.addEventListener('abort', cancel, { once: true });
    let outcome: PipelineOutcome;
    try {
      outcome = await new Promise<PipelineOutcome>((resolve, reject) => {
        running = new PipelineSubmittable(sent, resolve, reject);
        void client.query(running as unknown as pg.QueryConfig);
      });
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
    // A session the server ended (08xxx, 57Pxx) is gone, and with it whatever it held; one
    // refused at its claim ran nothing, and is discarded.
    if (outcome.error && isOrdinarySqlError(outcome.error) && !(sent !== steps && refusedAtClaim(outcome))) {
      await client.query(afterFailedPipeline(steps)).catch((error: unknown) => {
        // Not an ordinary SQL error: the session, perhaps not clean, is discarded.
        throw new Error(`could not clean the session after a failed statement: ${(error as Error).message}`);
      });
    }
    return outcome;
  }

  async close(): Promise<void> {
    clearInterval(this.#roomTimer);
    this.#leaveShare?.();
    for (const client of this.#parked.takeAll()) client.release(true);
    await this.#pool.end();
  }
}

/**
 * PostgreSQL's cancel request for the statement `client` runs now (`query`, its active query): pg
 * sends it on a connection of its own, as the protocol has it (no slot, no login), through TLS
 * when the connection string asks for it, and it ends the statement with 57014.
 */
function sendCancelRequest(connectionString: string, client: pg.Client, query: unknown): void {
  const canceller = new pg.Client({ connectionString }) as pg.Client & { cancel(client: pg.Client, query: unknown): void; connection: NodeJS.EventEmitter };
  // Nobody else listens on its connection: a failure to reach the server must not end the process.
  canceller.connection.on('error', () => undefined);
  canceller.cancel(client, query);
}

/**
 * A client whose protocol parser reads the server's bytes through a MessageBounder
 * (bounded-messages.ts), on the plain socket and on the TLS one alike: pg's Connection hands
 * each stream it reads to `attachListeners`, which is wrapped here on this client's own
 * connection (pg has no option for it).
 */
class BoundedClient extends pg.Client {
  constructor(config?: pg.ClientConfig) {
    super(config);
    const connection = this.connection as unknown as { attachListeners(stream: NodeJS.ReadableStream): void };
    const attach = connection.attachListeners.bind(connection);
    connection.attachListeners = (stream) => attach(boundedStream(stream));
  }
}

/**
 * A pipeline through pg's extension point for custom queries (a "submittable", as pg-cursor
 * uses): the client hands it the connection to write on and routes the answers to it.
 */
class PipelineSubmittable {
  readonly #collector: PipelineCollector;

  constructor(
    private readonly steps: readonly PipelineStep[],
    private readonly resolve: (outcome: PipelineOutcome) => void,
    private readonly reject: (error: Error) => void,
  ) {
    this.#collector = new PipelineCollector(steps);
  }

  submit(connection: PipelineWriter & { stream: { cork(): void; uncork(): void } }): void {
    // One write for the whole pipeline (pg's own Query corks alike): uncorked, every message
    // was a write(2) of its own, eleven for a query call, about 0.3 ms of the call.
    connection.stream.cork();
    try {
      writePipeline(this.steps, connection);
    } finally {
      connection.stream.uncork();
    }
  }

  handleRowDescription(message: PipelineMessage): void {
    this.#collector.on(message);
  }

  handleDataRow(message: PipelineMessage): void {
    this.#collector.on(message);
  }

  handleCommandComplete(): void {
    this.#collector.on({ name: 'commandComplete' });
  }

  handleEmptyQuery(): void {
    this.#collector.on({ name: 'emptyQuery' });
  }

  handlePortalSuspended(): void {}

  /** The COPY's data went out with the pipeline (writePipeline). */
  handleCopyInResponse(): void {}

  handleError(error: Error): void {
    // pg stops routing messages to a query once it failed (ReadyForQuery included), and holds
    // the client's next query until that ReadyForQuery: the outcome is complete here.
    if (!(error instanceof pg.DatabaseError)) return this.reject(error);
    this.#collector.on({ name: 'error' }, error);
    this.resolve(this.#collector.outcome);
  }

  handleReadyForQuery(): void {
    this.resolve(this.#collector.outcome);
  }
}

function sessionOf(client: pg.PoolClient, lost: () => Error | undefined): Queryable {
  const usable = () => {
    const error = lost();
    if (error) throw error;
  };
  return {
    async query<R>(sql: string, params?: readonly unknown[]) {
      usable();
      const result = await client.query(sql, params as unknown[] | undefined);
      return result.rows as R[];
    },
    async exec(sql: string) {
      usable();
      await client.query(sql);
    },
  };
}

/**
 * Only a session that failed with an ordinary SQL error goes back to the pool. A socket failure,
 * a server shutting down (classes 08 and 57P) or an exception of ours thrown mid-session leaves
 * it in an unknown state, so it is discarded and the next caller gets a fresh connection.
 */
function isOrdinarySqlError(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError) || typeof error.code !== 'string') return false;
  return !error.code.startsWith('08') && !error.code.startsWith('57P');
}

function redactPassword(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgresql (unparsable DATABASE_URL)';
  }
}

/** Who holds an advisory lock: a bigint key shows up as classid (high) / objid (low). */
function advisoryLockHolders(q: Queryable, key: bigint): Promise<LockHolder[]> {
  return q.query<LockHolder>(
    `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.state,
            round(extract(epoch FROM now() - a.xact_start))::int AS held_seconds
       FROM pg_catalog.pg_locks l
       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.classid = (($1::bigint >> 32) & 4294967295)::oid AND l.objid = ($1::bigint & 4294967295)::oid`,
    [key.toString()],
  );
}
