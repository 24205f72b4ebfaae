import { SCHEMA_PREFIX } from './workspaces/project-id.js';

export class ProjectNotAllowedError extends Error {
  override name = 'ProjectNotAllowedError';
}

/**
 * The optional per-server allowlist of project ids (`--allow-project`), for a server that gives
 * one agent one project. Every tool asks here: the server wraps each tool that takes a
 * project_id, and the tools that take none ask for what they reveal (a list is filtered, fleet
 * totals and lookups outside the allowed workspaces are refused).
 */
export class ProjectAccess {
  readonly #allowed: ReadonlySet<string> | undefined;

  constructor(allowed: readonly string[] | undefined) {
    this.#allowed = allowed ? new Set(allowed) : undefined;
  }

  get restricted(): boolean {
    return this.#allowed !== undefined;
  }

  /** The allowed ids, or undefined when every id is. */
  get allowed(): readonly string[] | undefined {
    return this.#allowed ? [...this.#allowed] : undefined;
  }

  allows(projectId: string): boolean {
    return !this.#allowed || this.#allowed.has(projectId);
  }

  check(projectId: string): void {
    if (!this.allows(projectId)) {
      throw new ProjectNotAllowedError(
        `Project ${JSON.stringify(projectId.slice(0, 80))} is not one this server serves: it is configured for ` +
          `${[...(this.#allowed ?? [])].map((id) => JSON.stringify(id)).join(', ')} only (--allow-project / PG_WORKSPACE_ALLOWED_PROJECTS).`,
      );
    }
  }

  /** Refuses a tool call that would reveal more than the allowed projects. */
  checkUnscoped(what: string): void {
    if (this.restricted) {
      throw new ProjectNotAllowedError(`${what} is not available on a server restricted to some projects: pass one of its project ids.`);
    }
  }

  /** A schema outside every workspace, or the workspace of an allowed project. */
  checkSchema(schema: string): void {
    if (!this.restricted || !schema.startsWith(SCHEMA_PREFIX)) return;
    this.check(schema.slice(SCHEMA_PREFIX.length).replaceAll('_', '-'));
  }
}
