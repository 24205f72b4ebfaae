import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { WorkspaceUse } from '../src/databases/member-databases.js';
import type { Embedder } from '../src/embeddings/embedder.js';
import type { ProjectAccess } from '../src/project-access.js';
import type { WorkspaceSandbox } from '../src/sandbox/workspace-sandbox.js';
import type { SearchService } from '../src/search/search-service.js';
import type { WorkspaceFleet } from '../src/workspaces/workspace-fleet.js';
import type { ListOptions, WorkspaceManager, WorkspacePage } from '../src/workspaces/workspace-manager.js';

/** The failure behind an `isError` result, for the server's wrapper: a symbol key, so never sent. */
const FAILURE = Symbol('failure');

/** Why a result of `runTool` is an error (undefined for a success). */
export function failureOf(result: unknown): unknown {
  return (result as { [FAILURE]?: unknown } | undefined)?.[FAILURE];
}

/**
 * What the tools need from the engine, once boot has finished. `signal`: the call's cancellation;
 * a call cancelled before its work starts does none. `projectId`: the workspace the call is about,
 * whose database's services are returned (workspaces may be spread over databases; the engine's
 * `readyFor`); undefined: the home database's. `use`: whether the call makes the workspace when
 * it does not exist ('create': ensure_workspace, the SQL tools, ingest, whose
 * services do) or only uses one ('existing'); only a call that creates places a new id.
 */
export interface ToolDeps {
  workspaces(signal: AbortSignal | undefined, projectId: string | undefined, use: WorkspaceUse): Promise<WorkspaceManager>;
  fleet(signal: AbortSignal | undefined, projectId: string, use: WorkspaceUse): Promise<WorkspaceFleet>;
  sandbox(signal: AbortSignal | undefined, projectId: string, use: WorkspaceUse): Promise<WorkspaceSandbox>;
  /** Search by text and ingest (search, add_documents, index_directory). */
  search(signal: AbortSignal | undefined, projectId: string, use: WorkspaceUse): Promise<SearchService>;
  /** A page of list_workspaces, over every database (reading only those that hold its workspaces). */
  list(signal: AbortSignal | undefined, options: ListOptions): Promise<WorkspacePage>;
  /** `read` on the services of every database, a few at a time, making none (the fleet's workspace_status). */
  readEach<T>(signal: AbortSignal | undefined, read: (services: { workspaces: WorkspaceManager; fleet: WorkspaceFleet }) => Promise<T>): Promise<T[]>;
  /** A fork's services: `to` is placed beside `from`. */
  forkServices(from: string, to: string, signal?: AbortSignal): Promise<{ workspaces: WorkspaceManager; search: SearchService }>;
  /**
   * The configured embedding provider (`--embeddings`). Without one it throws
   * EmbeddingsNotConfiguredError, whose message tells the agent how to configure it.
   */
  embedder(signal?: AbortSignal): Promise<Embedder>;
  /** The per-server project allowlist, which every tool obeys. */
  access: ProjectAccess;
  /** The client may be on another machine (HTTP): its MCP roots name directories of its disk, not of this one. */
  clientElsewhere: boolean;
  /** Turns a failure of a call about `projectId` into the message the agent sees (e.g. advice when the database is down). */
  explain(error: unknown, projectId: string | undefined): Promise<string>;
}

/**
 * Runs a tool body. Success carries the structured result (checked by the SDK against the
 * output schema) and, for clients that read only text, the same object serialized as JSON, so
 * it parses as is (the spec's advice for structured results); any failure becomes an `isError` result with a message
 * that says how to fix it, so one bad call never takes the server down. `projectId`: the workspace
 * the call is about (undefined: none), whose database a failure is checked against (a registry
 * dropped there is installed again).
 */
export async function runTool<T extends Record<string, unknown>>(
  deps: ToolDeps,
  projectId: string | undefined,
  body: () => Promise<T>,
): Promise<CallToolResult> {
  try {
    const structured = await body();
    return {
      content: [{ type: 'text', text: JSON.stringify(structured) }],
      structuredContent: structured,
    };
  } catch (error) {
    return { isError: true, content: [{ type: 'text', text: await deps.explain(error, projectId) }], [FAILURE]: error };
  }
}
