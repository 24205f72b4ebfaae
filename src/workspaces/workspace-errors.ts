import { describePgError, pgError } from '../db/sql-errors.js';

export class WorkspaceNotFoundError extends Error {
  override name = 'WorkspaceNotFoundError';
  constructor(projectId: string) {
    super(`Workspace "${projectId}" does not exist. Create it first with ensure_workspace.`);
  }
}

/**
 * The id is placed in a member database (databases/placements.ts) and the call came to the home
 * database: its server started before any workspace was spread, and so did not follow placements.
 */
export class WorkspacePlacedElsewhereError extends Error {
  override name = 'WorkspacePlacedElsewhereError';
  constructor(projectId: string) {
    super(
      `The workspace of "${projectId}" belongs to another database of this PostgreSQL server (another server spreads workspaces ` +
        'over databases, --workspaces-per-database), which this server did not follow since it started before that. It follows them now: retry the call.',
    );
  }
}

/** Like the Python seed: a missing privilege comes back with the GRANTs that fix it (see privilege-advice.ts). */
export class WorkspacePermissionError extends Error {
  override name = 'WorkspacePermissionError';
  readonly sqlState = '42501';
  constructor(schemaName: string, advice: string, cause: unknown) {
    super(`Cannot create or upgrade workspace schema "${schemaName}". ${advice}\nPostgreSQL said: ${describePgError(cause)}`, { cause });
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

/** A schema named like the workspace that the server did not make: never taken over. */
export class ForeignSchemaError extends Error {
  override name = 'ForeignSchemaError';
  constructor(projectId: string, schemaName: string) {
    super(
      `Schema ${schemaName} exists but was not made by pg-workspace-mcp (it lacks the server's workspace marker), so it is not ` +
        `taken over as workspace "${projectId}"; nothing was changed. Choose another project id, or rename or drop that schema. ` +
        `If it is a workspace whose registry row was lost, \`pg-workspace-mcp repair --adopt-orphans\` takes it back after ` +
        `checking its tables (see docs/operations.md).`,
    );
  }
}
