import type { PipelineOutcome } from './database.js';
import { sqlState } from './sql-errors.js';

/**
 * The first step of every call that runs a workspace's agent code: the session is claimed for the
 * workspace (extensions/core/schema.sql, claim_connection and claim_session) before any agent
 * code runs. A custom setting leaves its name in the session as a placeholder PostgreSQL can
 * neither list nor remove, so a session that holds another workspace's is refused (SESSION_TAKEN)
 * and nothing else of the call runs: the backend takes a new session and runs the call again.
 */
export const SESSION_TAKEN = 'PW030';
/**
 * A PostgreSQL backend that ran another workspace's code ends itself when claimed (a pooler in
 * transaction mode would otherwise hand it on to the next client): its claim fails with 57P01.
 */
const BACKEND_ENDED = '57P01';

/** How many new sessions one call may ask for before it fails (one is enough unless another call keeps tainting them). */
export const CLAIM_ATTEMPTS = 3;
/**
 * The same on PostgreSQL, where each refusal discards its connection and, behind a pooler in
 * transaction mode, ends a backend another workspace marked: the pooler hands out its idle
 * backends most recent first, so a call may meet one marked backend after another until it finds
 * its own or a new one, bounded by the pool's size (with 6 workspaces on a pool of 4, 7 of 60 calls
 * failed at 3 tries).
 */
export const CONNECTION_CLAIM_ATTEMPTS = 64;

/** A claim: a pipeline's first step, or a statement of its own. */
export interface ClaimStep {
  sql: string;
  params: readonly (string | null)[];
}

/** A pooled PostgreSQL connection: `ran` is the workspace (schema OID) whose code it ran, undefined for none. */
export const claimConnection = (projectId: string, ran: string | undefined): ClaimStep => ({
  sql: 'SELECT project_registry.claim_connection($1, $2)',
  params: [projectId, ran ?? null],
});

/** The statement of a claim of PGlite's session, as the owner of a shared store recognizes it (pglite-socket-server.ts). */
export const CLAIM_SESSION_SQL = 'SELECT project_registry.claim_session($1)';

/** PGlite's one session, watched for new placeholders; undefined: the server's own run of table code (maintenance). */
export const claimSession = (projectId: string | undefined): ClaimStep => ({
  sql: CLAIM_SESSION_SQL,
  params: [projectId ?? null],
});

/** Whether a pipeline that began with a claim was refused at the claim (nothing after it ran). */
export function refusedAtClaim(outcome: PipelineOutcome): boolean {
  return outcome.results.length === 0 && isSessionTaken(outcome.error);
}

/** Whether a claim's error refuses the session (an administrator's end of the backend there too: nothing ran either way). */
export function isSessionTaken(error: unknown): boolean {
  const state = sqlState(error);
  return state === SESSION_TAKEN || state === BACKEND_ENDED;
}

/** The claimed workspace's identity (its schema's OID) from a pipeline that began with a claim. */
export function claimedIdentity(outcome: PipelineOutcome): string | undefined {
  return outcome.results[0]?.rows[0]?.[0] ?? undefined;
}

/** The outcome as the caller's steps see it: without the claim's. */
export function withoutClaim(outcome: PipelineOutcome): PipelineOutcome {
  return { ...outcome, results: outcome.results.slice(1) };
}

/** The session kept being refused: a call of another workspace keeps taking it between tries. */
export class SessionUnavailableError extends Error {
  override name = 'SessionUnavailableError';

  constructor(tries: number) {
    super(
      `No database session free of another workspace's custom settings could be had in ${tries} tries; nothing of this ` +
        'call ran. Retry the call.',
    );
  }
}
