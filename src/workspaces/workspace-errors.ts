import { describePgError, pgError } from '../db/sql-errors.js';

export class WorkspaceNotFoundError extends Error {
  override name = 'WorkspaceNotFoundError';
  constructor(projectId: string) {
    super(`Workspace "${projectId}" does not exist. Create it first with ensure_workspace.`);
  }
}

/** Like the Python seed: a missing privilege comes back with the GRANT that fixes it. */
export class WorkspacePermissionError extends Error {
  override name = 'WorkspacePermissionError';
  readonly sqlState = '42501';
  constructor(schemaName: string, database: string, role: string, cause: unknown) {
    super(
      `Cannot create workspace schema "${schemaName}": the database role "${role}" lacks a privilege. ` +
        `An administrator can fix it with:\n  GRANT CREATE ON DATABASE "${database}" TO "${role}";\n` +
        `PostgreSQL said: ${describePgError(cause)}`,
      { cause },
    );
  }
}

/** Any other database failure while provisioning: PostgreSQL's SQLSTATE and message are kept. */
export class WorkspaceProvisionError extends Error {
  override name = 'WorkspaceProvisionError';
  readonly sqlState: string | undefined;
  constructor(projectId: string, where: string, cause: unknown) {
    super(
      `Provisioning workspace "${projectId}" failed${where}; nothing was created.\n${describePgError(cause)}`,
      { cause },
    );
    this.sqlState = pgError(cause)?.code;
  }
}
