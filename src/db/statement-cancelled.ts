/**
 * A statement its caller's signal cancelled (Database.pipeline), or never sent because the signal
 * was aborted before: PostgreSQL's SQLSTATE and words for a cancel request, on every backend.
 */
export class StatementCancelledError extends Error {
  override name = 'StatementCancelledError';
  readonly code = '57014';
  readonly severity = 'ERROR';

  constructor() {
    super('canceling statement due to user request');
  }
}
