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

/** How many new sessions one call may ask for before it fails (one is enough unless another call keeps tainting them). */
export const CLAIM_ATTEMPTS = 3;

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

/** PGlite's one session, watched for new placeholders; undefined: the server's own run of table code (maintenance). */
export const claimSession = (projectId: string | undefined): ClaimStep => ({
  sql: 'SELECT project_registry.claim_session($1)',
  params: [projectId ?? null],
});

/** Whether a pipeline that began with a claim was refused at the claim (nothing after it ran). */
export function refusedAtClaim(outcome: PipelineOutcome): boolean {
  return outcome.results.length === 0 && sqlState(outcome.error) === SESSION_TAKEN;
}

export function isSessionTaken(error: unknown): boolean {
  return sqlState(error) === SESSION_TAKEN;
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

  constructor() {
    super(
      `No database session free of another workspace's custom settings could be had in ${CLAIM_ATTEMPTS} tries; nothing of this ` +
        'call ran. Retry the call.',
    );
  }
}
