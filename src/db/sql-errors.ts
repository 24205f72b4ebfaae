/** PostgreSQL error fields as both `pg` and PGlite report them. */
export interface PgErrorFields {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
  position?: string | number;
  /** For an error inside a statement that PL/pgSQL ran with EXECUTE: that statement and where in it. */
  internalQuery?: string;
  internalPosition?: string | number;
}

export function pgError(error: unknown): PgErrorFields | undefined {
  const e = error as Partial<PgErrorFields> | null;
  return e && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? (e as PgErrorFields) : undefined;
}

export function sqlState(error: unknown): string | undefined {
  return pgError(error)?.code;
}

/** PostgreSQL's own words: message, SQLSTATE, detail and hint. */
export function describePgError(error: unknown): string {
  const e = pgError(error);
  if (!e) return error instanceof Error ? error.message : String(error);
  return [
    `${e.message} (SQLSTATE ${e.code})`,
    e.detail ? `DETAIL: ${e.detail}` : '',
    e.hint ? `HINT: ${e.hint}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

/** A lost connection whose message already says what happened and what to do. */
export class ConnectionLostError extends Error {
  override name = 'ConnectionLostError';
}

/**
 * The process serving the embedded store (shared-store.ts) died during a call: what the call did was committed before or
 * rolled back whole. A call that is safe to repeat may be made again once another process has
 * taken the store over (`isStoreHandover`); others report it.
 */
export class StoreOwnerLostError extends ConnectionLostError {
  override name = 'StoreOwnerLostError';
}

/** The failure, or one of its causes, is the store's owner dying during the call. */
export function isStoreHandover(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof StoreOwnerLostError) return true;
  return false;
}

/**
 * A connection its driver lost without a SQLSTATE, in the driver's own words: each backend
 * turns its driver's way of saying so into this (see postgres-database.ts), so that nothing
 * above the backends reads a driver's message text.
 */
export class ConnectionBrokenError extends Error {
  override name = 'ConnectionBrokenError';
}

/**
 * Errors after which retrying later can succeed: the connection failed or the server is
 * starting, stopping or overloaded (classes 08, 57P, 53), or the socket broke with no SQLSTATE.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof ConnectionLostError || error instanceof ConnectionBrokenError) return true;
  const sysCode = (error as { code?: unknown } | null | undefined)?.code;
  // Before the SQLSTATE: EPIPE is five capitals, so it would pass for one.
  if (typeof sysCode === 'string' && /^E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NOTFOUND|AI_AGAIN)$/.test(sysCode)) return true;
  const code = sqlState(error);
  return code !== undefined && /^(08|57P|53)/.test(code);
}

/** The message a caller sees: a lost database gets advice instead of a socket error. */
export function explainError(error: unknown, database: string): string {
  if (error instanceof ConnectionLostError) return error.message;
  // Citus's wording when the coordinator cannot open a connection to a worker, as the current role.
  if (isConnectionFailure(error) && pgError(error)?.message.startsWith('connection to the remote node')) {
    return (
      `The database (${database}) could not reach a Citus worker: ${describePgError(error)}. If it names a workspace's role ` +
      "(pgw_...), the worker's pg_hba.conf must let the coordinator connect as it (docs/citus.md); otherwise check " +
      'that the worker is running, and retry the call once it is back.'
    );
  }
  if (isConnectionFailure(error)) {
    return (
      `Cannot reach the database (${database}): ${describePgError(error)}. Check that PostgreSQL is running ` +
      'and DATABASE_URL is right; retry the call once it is back (the server reconnects by itself).'
    );
  }
  return error instanceof Error ? error.message : String(error);
}
