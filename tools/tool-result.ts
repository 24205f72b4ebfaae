import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ProjectAccess } from '../src/project-access.js';
import type { WorkspaceSql } from '../src/sandbox/workspace-sql.js';
import type { WorkspaceFleet } from '../src/workspaces/workspace-fleet.js';
import type { WorkspaceManager } from '../src/workspaces/workspace-manager.js';

/** What the tools need from the engine, once boot has finished. */
export interface ToolDeps {
  workspaces(): Promise<WorkspaceManager>;
  fleet(): Promise<WorkspaceFleet>;
  sql(): Promise<WorkspaceSql>;
  /** The per-server project allowlist, which every tool obeys. */
  access: ProjectAccess;
  /** Turns a failure into the message the agent sees (e.g. advice when the database is down). */
  explain(error: unknown): string;
}

/**
 * Runs a tool body. Success carries both the structured result (checked by the SDK against the
 * output schema) and a text rendering; any failure becomes an `isError` result with a message
 * that says how to fix it, so one bad call never takes the server down.
 */
export async function runTool<T extends Record<string, unknown>>(
  deps: ToolDeps,
  summarise: (result: T) => string,
  body: () => Promise<T>,
): Promise<CallToolResult> {
  try {
    const structured = await body();
    return {
      content: [{ type: 'text', text: `${summarise(structured)}\n${JSON.stringify(structured)}` }],
      structuredContent: structured,
    };
  } catch (error) {
    return { isError: true, content: [{ type: 'text', text: deps.explain(error) }] };
  }
}
