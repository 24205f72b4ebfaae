import { describe, expect, it } from 'vitest';
import { isRetriedBootFailure } from '../../src/boot-failures.js';
import { describePgError, explainError, isConnectionFailure, pgError, sqlState } from '../../src/db/sql-errors.js';
import { asConnectionBroken } from '../../src/db/postgres/pg-connection-errors.js';
import { InstallLockTimeoutError } from '../../src/installer/install-lock.js';
import { ExtensionLoadError } from '../../src/extensions/load-extensions.js';

/** An error as `pg` and PGlite report one: an Error carrying PostgreSQL's fields. */
const pgFailure = (code: string, message = 'failed', fields: Record<string, unknown> = {}) =>
  Object.assign(new Error(message), { code, ...fields });

/** A socket error as Node reports one: a system error code, no SQLSTATE. */
const systemError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });

describe('sql-errors', () => {
  it('reads a SQLSTATE only when it is one (five digits or capitals)', () => {
    expect(sqlState(pgFailure('42P07'))).toBe('42P07');
    expect(sqlState(systemError('ECONNREFUSED'))).toBeUndefined();
    expect(pgError(pgFailure('4242'))).toBeUndefined();
    expect(pgError(null)).toBeUndefined();
    expect(pgError('text')).toBeUndefined();
  });

  it("describes PostgreSQL's message with its SQLSTATE, detail and hint", () => {
    expect(describePgError(pgFailure('23505', 'duplicate key', { detail: 'Key (id)=(1) exists.', hint: 'Pick another.' }))).toBe(
      'duplicate key (SQLSTATE 23505)\nDETAIL: Key (id)=(1) exists.\nHINT: Pick another.',
    );
    expect(describePgError(pgFailure('42501', 'permission denied'))).toBe('permission denied (SQLSTATE 42501)');
    expect(describePgError(new Error('plain'))).toBe('plain');
    expect(describePgError('a string')).toBe('a string');
  });

  it('counts connection, shutdown and resource failures as retryable, by SQLSTATE class', () => {
    for (const code of ['08006', '08001', '57P01', '57P03', '53300']) expect(isConnectionFailure(pgFailure(code)), code).toBe(true);
    for (const code of ['42501', '42P07', '23505', '57014', '40001']) expect(isConnectionFailure(pgFailure(code)), code).toBe(false);
  });

  it('counts socket errors and the messages pg gives a dropped connection, but not our own error classes', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']) {
      expect(isConnectionFailure(systemError(code)), code).toBe(true);
    }
    expect(isConnectionFailure(systemError('ENOENT'))).toBe(false);
    // The pg backend turns pg's wording into ConnectionBrokenError; nothing else reads it.
    for (const message of ['Connection terminated unexpectedly', 'timeout expired: connection timeout', 'Client has encountered a connection error and is not queryable']) {
      expect(isConnectionFailure(new Error(message)), message).toBe(false);
      expect(isConnectionFailure(asConnectionBroken(new Error(message))), message).toBe(true);
    }
    expect(isConnectionFailure(asConnectionBroken(new ExtensionLoadError('Connection terminated in a message we wrote')))).toBe(false);
    expect(isConnectionFailure(asConnectionBroken(new Error('syntax error')))).toBe(false);
    expect(isConnectionFailure(new Error('syntax error'))).toBe(false);
    expect(isConnectionFailure(undefined)).toBe(false);
  });

  it('turns a lost database into advice naming it, and leaves other messages as they are', () => {
    expect(explainError(systemError('ECONNREFUSED'), 'the PostgreSQL server in DATABASE_URL')).toBe(
      'Cannot reach the database (the PostgreSQL server in DATABASE_URL): connect ECONNREFUSED 127.0.0.1:5432. Check that PostgreSQL ' +
        'is running and DATABASE_URL is right; retry the call once it is back (the server reconnects by itself).',
    );
    expect(explainError(pgFailure('42501', 'permission denied for schema x'), 'db')).toBe('permission denied for schema x');
    expect(explainError('odd', 'db')).toBe('odd');
  });

  it("says a Citus worker, not DATABASE_URL, is what failed when the coordinator cannot connect to one", () => {
    const refused = pgFailure(
      '08006',
      'connection to the remote node pgw_ab12cd34_a@10.0.0.2:5432 failed with the following error: FATAL:  role "pgw_ab12cd34_a" is not permitted to log in',
    );
    const message = explainError(refused, 'db');
    expect(message).toMatch(/^The database \(db\) could not reach a Citus worker: connection to the remote node pgw_ab12cd34_a@10\.0\.0\.2:5432/);
    expect(message).toContain("the worker's pg_hba.conf must let the coordinator connect as it");
    expect(message).not.toContain('DATABASE_URL');
  });
});

describe('isRetriedBootFailure', () => {
  it('retries what can pass without a restart, looking along the cause chain', () => {
    const wrapped = (cause: unknown) => new Error('install failed', { cause: new Error('phase failed', { cause }) });
    expect(isRetriedBootFailure(new InstallLockTimeoutError('gave up'))).toBe(true);
    expect(isRetriedBootFailure(wrapped(systemError('ECONNRESET')))).toBe(true);
    expect(isRetriedBootFailure(wrapped(pgFailure('57P01')))).toBe(true);
    // A missing privilege: an administrator may run the GRANT the message gave.
    expect(isRetriedBootFailure(wrapped(pgFailure('42501')))).toBe(true);
    expect(isRetriedBootFailure(Object.assign(new Error('install failed'), { sqlState: '42501' }))).toBe(true);
  });

  it('keeps failures that need a change (bad SQL, a bad extension) final', () => {
    expect(isRetriedBootFailure(new ExtensionLoadError('bad manifest'))).toBe(false);
    expect(isRetriedBootFailure(new Error('install failed', { cause: pgFailure('42601', 'syntax error') }))).toBe(false);
    expect(isRetriedBootFailure(undefined)).toBe(false);
  });

  it('stops at a depth of 8 causes', () => {
    let error: unknown = systemError('ECONNRESET');
    for (let i = 0; i < 8; i++) error = new Error(`level ${i}`, { cause: error });
    expect(isRetriedBootFailure(error)).toBe(false);
  });
});
