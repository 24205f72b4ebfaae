import { createHash } from 'node:crypto';

/** Project ids and the schema names derived from them. */

export const PROJECT_ID_PATTERN = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
/** `project_` (8 bytes) + 55 stays within PostgreSQL's 63-byte identifier limit. */
export const PROJECT_ID_MAX_LENGTH = 55;
export const SCHEMA_PREFIX = 'project_';

export const PROJECT_ID_RULES =
  `A project id is 1-${PROJECT_ID_MAX_LENGTH} characters of lower-case ASCII letters and digits, starting with a letter, ` +
  'with single hyphens between words (e.g. "client-a", "frontend-app-2").';

export class WorkspaceIdError extends Error {
  override name = 'WorkspaceIdError';
}

/** Throws a WorkspaceIdError that says what is wrong and what a valid id looks like. */
export function validateProjectId(value: unknown): string {
  if (typeof value !== 'string') throw new WorkspaceIdError(`The project id must be a string. ${PROJECT_ID_RULES}`);
  const shown = value.length > 80 ? `${JSON.stringify(value.slice(0, 80))}… (${value.length} characters)` : JSON.stringify(value);
  if (value.length > PROJECT_ID_MAX_LENGTH) {
    throw new WorkspaceIdError(`Invalid project id ${shown}: longer than ${PROJECT_ID_MAX_LENGTH} characters. ${PROJECT_ID_RULES}`);
  }
  if (!PROJECT_ID_PATTERN.test(value)) {
    throw new WorkspaceIdError(`Invalid project id ${shown}. ${PROJECT_ID_RULES}`);
  }
  return value;
}

/**
 * `client-a` -> `project_client_a`. Injective because ids never contain `_`, and ids never
 * have two hyphens in a row or at either end, so the mapping can be inverted.
 */
export function schemaNameFor(projectId: string): string {
  return SCHEMA_PREFIX + validateProjectId(projectId).replaceAll('-', '_');
}

/** The inverse of schemaNameFor: the project id whose workspace schema is `schemaName`, if any. */
export function projectIdOfSchema(schemaName: string): string | undefined {
  if (!schemaName.startsWith(SCHEMA_PREFIX)) return undefined;
  const id = schemaName.slice(SCHEMA_PREFIX.length).replaceAll('_', '-');
  return id.length <= PROJECT_ID_MAX_LENGTH && PROJECT_ID_PATTERN.test(id) ? id : undefined;
}

export const RESERVED_ID_RULES =
  'Reserved ids: "registry" and every id beginning with "registry-" (the server\'s own schemas), and any id ' +
  "whose schema an enabled extension's global SQL or a required PostgreSQL extension uses.";

export class ReservedProjectIdError extends WorkspaceIdError {
  override name = 'ReservedProjectIdError';
}

/**
 * Schemas named like workspaces that are not workspaces, so the ids mapping to them are refused:
 * otherwise `ensure_workspace` would put workspace tables into them (its DDL is idempotent) and
 * register them. The server's registry is `project_registry`, and any schema the server adds
 * later will be named `project_registry_*`: ids `registry` and `registry-*` are reserved for
 * good. The others are found at boot, from the enabled extensions.
 */
export class ReservedSchemas {
  readonly #users = new Map<string, string>();

  /** `user` completes "its schema ... is": e.g. `used by the global SQL of extension "notes"`. */
  add(schemaName: string, user: string): void {
    if (schemaName.startsWith(SCHEMA_PREFIX) && !this.#users.has(schemaName)) this.#users.set(schemaName, user);
  }

  /** The workspace schema of a valid, unreserved project id. */
  schemaFor(projectId: string): string {
    const schemaName = schemaNameFor(projectId);
    const user =
      schemaName === 'project_registry' || schemaName.startsWith('project_registry_')
        ? "the server's own (its workspace registry and bookkeeping)"
        : this.#users.get(schemaName);
    if (user) {
      throw new ReservedProjectIdError(
        `The project id "${projectId}" is reserved: its schema ${schemaName} is ${user}. Choose another id. ${RESERVED_ID_RULES}`,
      );
    }
    return schemaName;
  }
}

/** What every snapshot schema's name has after its workspace's part (see snapshotSchemaName). */
export const SNAPSHOT_SCHEMA_INFIX = '__snap_';

/**
 * The schema of a workspace's snapshot number `n`: `project_client_a__snap_3`. No workspace
 * schema contains `__` (ids never have two hyphens in a row), so no project id maps to it and it
 * is never taken for a workspace or an orphan. A name that would pass PostgreSQL's 63 bytes keeps
 * the start of the workspace's schema name and a hash of all of it.
 */
export function snapshotSchemaName(workspaceSchema: string, n: number): string {
  const suffix = `${SNAPSHOT_SCHEMA_INFIX}${n}`;
  if (workspaceSchema.length + suffix.length <= 63) return workspaceSchema + suffix;
  const hash = createHash('sha256').update(workspaceSchema).digest('hex').slice(0, 8);
  return `${workspaceSchema.slice(0, 63 - suffix.length - hash.length - 1)}_${hash}${suffix}`;
}
