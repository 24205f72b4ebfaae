import { describePgError, pgError } from '../db/sql-errors.js';
import type { Statement } from '../extensions/extension-sql.js';

export type InstallPhase = 'structural' | 'migrations' | 'dependent' | 'columns' | 'seeds' | 'extensions';

/** A failed install step, with what graphile-migrate-style reports give: where, what, and why. */
export class InstallError extends Error {
  override name = 'InstallError';
  readonly sqlState: string | undefined;

  constructor(
    readonly extensionId: string,
    readonly phase: InstallPhase,
    detail: string,
    cause?: unknown,
    /** The statement that failed, when one did. */
    readonly statement?: Statement,
  ) {
    super(`Extension "${extensionId}", ${phase} phase: ${detail}`, { cause });
    this.sqlState = pgError(cause)?.code;
  }

  static statementFailed(extensionId: string, phase: InstallPhase, statement: Statement, cause: unknown) {
    return new InstallError(
      extensionId,
      phase,
      `${statement.file} statement ${statement.number}/${statement.total} (line ${statement.line}) failed; ` +
        `the phase was rolled back.\n${describePgError(cause)}\nSQL:\n${indent(statement.sql)}`,
      cause,
      statement,
    );
  }
}

function indent(sql: string): string {
  const shown = sql.length > 2000 ? `${sql.slice(0, 2000)}…` : sql;
  return shown.replace(/^/gm, '    ');
}

/** A permission failure outside any extension's SQL (reading the registry at boot), with the GRANTs that fix it. */
export class InstallPrivilegeError extends Error {
  override name = 'InstallPrivilegeError';
  readonly sqlState = '42501';
}
