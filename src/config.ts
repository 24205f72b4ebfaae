import path from 'node:path';
import { parseArgs } from 'node:util';
import envPaths from 'env-paths';
import * as z from 'zod';
import { DEFAULT_MAINTENANCE_IDLE_MS } from './db/embedded/store-maintenance.js';
import { EMBEDDINGS_DEFAULTS, EMBEDDINGS_FLAGS, EmbeddingsConfigError, parseEmbeddingsConfig, type EmbeddingsConfig, type EmbeddingsFlags } from './embeddings/embeddings-config.js';
import type { LogLevel } from './logger.js';
import { PROJECT_ID_MAX_LENGTH, PROJECT_ID_PATTERN, PROJECT_ID_RULES } from './workspaces/project-id.js';

export interface Config {
  /** Set: a PostgreSQL server through `pg`. Unset: embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  extensionDirs: string[];
  disabledExtensions: string[];
  lockTimeoutMs: number;
  logLevel: LogLevel;
  /** Set: the only project ids any tool accepts. Unset: every valid id. */
  allowedProjects: string[] | undefined;
  /** Statement timeout of every query/execute call. */
  statementTimeoutMs: number;
  /** The largest max_rows a query may ask for. */
  maxRowsCap: number;
  /** The most bytes of rows one query/execute call returns. */
  maxResultBytes: number;
  /** The most query/execute/search_vectors calls of one workspace that run at once. */
  maxCallsPerWorkspace: number;
  /** Statement timeout of each statement of a workspace upgrade (agent triggers may fire in it). */
  upgradeTimeoutMs: number;
  /** On PostgreSQL: maintenance_work_mem, in MB, of building the vector indexes a large ingest deferred. */
  indexBuildMemoryMb: number;
  /** Directories index_directory may read (for clients without MCP roots; a bound on those with them). */
  allowedRoots: string[];
  /** The most snapshots one workspace keeps. */
  maxSnapshots: number;
  /** The most bytes one workspace's snapshots take together. */
  snapshotBudgetBytes: number;
  /** On PostgreSQL: how long a call that finds no free connection slot waits for one. */
  connectWaitMs: number;
  /** The embedded store vacuums and analyzes the tables that need it once idle this long. */
  maintenanceIdleMs: number;
  /**
   * On PostgreSQL (serve): new workspaces are spread over databases of the server, this many to a
   * database (docs/operations.md, "Many workspaces"); unset: every workspace in DATABASE_URL's.
   */
  workspacesPerDatabase?: number | undefined;
  /** The embedding provider (serve only); unset: none. */
  embeddings?: EmbeddingsConfig | undefined;
}

/** Where `--http` serves; absent: stdio. */
export interface HttpConfig {
  host: string;
  port: number;
  /** Required when `host` is not a loopback address. */
  token: string | undefined;
  /** Host names the Host and Origin headers may carry (DNS-rebinding protection); empty: not checked. */
  allowedHosts: string[];
  /** A session with no request in flight and no open stream for this long is closed. */
  sessionIdleTimeoutMs: number;
  /** The most sessions open at once. */
  maxSessions: number;
}

export type Command =
  | { kind: 'serve'; config: Config; http: HttpConfig | undefined }
  | { kind: 'migrate-workspaces'; config: Config; concurrency: number; dryRun: boolean }
  | { kind: 'reembed'; config: Config & { embeddings: EmbeddingsConfig }; projectId: string | undefined }
  | { kind: 'db-url'; config: Config }
  | { kind: 'doctor'; config: Config; json: boolean }
  | { kind: 'drop-workspace'; config: Config; json: boolean; projectId: string }
  | { kind: 'rename-workspace'; config: Config; json: boolean; from: string; to: string }
  | { kind: 'snapshots'; config: Config; json: boolean; request: SnapshotRequest }
  | {
      kind: 'repair';
      config: Config;
      json: boolean;
      dryRun: boolean;
      adoptOrphans: boolean;
      forgetMissing: boolean;
      restoreIndexes: boolean;
      acceptMigrations: string[];
    }
  | { kind: 'help' }
  | { kind: 'version' };

/** The snapshot commands (docs/snapshots.md), as their arguments name them. */
export type SnapshotRequest =
  | { action: 'snapshot-workspace'; projectId: string; label: string | undefined }
  | { action: 'list-snapshots'; projectId: string }
  | { action: 'restore-workspace'; projectId: string; snapshot: number }
  | { action: 'drop-snapshot'; projectId: string; snapshot: number }
  | { action: 'fork-workspace'; from: string; to: string; snapshot: number | undefined };

/** Each snapshot command's positional arguments: project ids and snapshot numbers. */
const SNAPSHOT_COMMANDS: Record<SnapshotRequest['action'], readonly ('ID' | 'SNAPSHOT')[]> = {
  'snapshot-workspace': ['ID'],
  'list-snapshots': ['ID'],
  'restore-workspace': ['ID', 'SNAPSHOT'],
  'drop-snapshot': ['ID', 'SNAPSHOT'],
  'fork-workspace': ['ID', 'ID'],
};

const isSnapshotCommand = (word: string | undefined): word is SnapshotRequest['action'] => word !== undefined && Object.hasOwn(SNAPSHOT_COMMANDS, word);

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
const MAX_LOCK_TIMEOUT_MS = 86_400_000;
const DEFAULT_MIGRATE_CONCURRENCY = 4;
const MAX_MIGRATE_CONCURRENCY = 64;
const MIN_HTTP_TOKEN_LENGTH = 16;
const DEFAULT_HTTP_SESSION_IDLE_TIMEOUT_S = 1800;
const MAX_HTTP_SESSION_IDLE_TIMEOUT_S = 604_800;
const DEFAULT_HTTP_MAX_SESSIONS = 100;
const MAX_HTTP_MAX_SESSIONS = 100_000;
/** The most bytes of rows one SQL tool call returns, by default (PG_WORKSPACE_MAX_RESULT_BYTES). */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;
const MAX_RESULT_BYTES_CAP = 256 * 1024 * 1024;
/** Below the pool's 10 connections: one workspace's burst leaves the others connections to run on. */
export const DEFAULT_MAX_CALLS_PER_WORKSPACE = 4;
/** Workspace migrations may rewrite big tables: longer than an agent's call, but bounded. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 60_000;
/**
 * maintenance_work_mem of a deferred HNSW build on PostgreSQL (PG_WORKSPACE_INDEX_BUILD_MEMORY_MB):
 * past PostgreSQL's default 64 MB a graph of 768 dimensions spills to disk after about 17,000 rows,
 * and a 25,000-row build took 70-81 s there, 31-38 s at 512 MB (docs/search.md). An agent may
 * SET as much itself for its own CREATE INDEX; this is per build, and builds at once add up.
 */
export const DEFAULT_INDEX_BUILD_MEMORY_MB = 256;
const MAX_INDEX_BUILD_MEMORY_MB = 65_536;
/**
 * The database size docs and --help suggest for --workspaces-per-database: at 10,000 workspaces
 * 50 to a database kept every per-workspace call within 1.12 of a 10-workspace server's (server
 * CPU), where 100 left CREATE FUNCTION at 1.24-1.32 (docs/benchmarks.md, Spread over databases).
 */
export const SUGGESTED_WORKSPACES_PER_DATABASE = 50;
/** Snapshots per workspace, and their bytes together, by default (docs/snapshots.md). */
export const DEFAULT_MAX_SNAPSHOTS = 10;
export const DEFAULT_SNAPSHOT_BUDGET_BYTES = 1024 * 1024 * 1024;
/** How long a call waits for a free connection slot by default (PG_WORKSPACE_CONNECT_WAIT_MS). */
export const DEFAULT_CONNECT_WAIT_MS = 20_000;

export const USAGE = `Usage: pg-workspace-mcp [options]
       pg-workspace-mcp migrate-workspaces [--concurrency N] [--dry-run] [options]
       pg-workspace-mcp db-url [options]
       pg-workspace-mcp doctor [--json] [options]
       pg-workspace-mcp repair [--adopt-orphans] [--forget-missing] [--restore-indexes] [--accept-migration EXT/NAME]... [--dry-run] [--json] [options]
       pg-workspace-mcp drop-workspace PROJECT_ID [--json] [options]
       pg-workspace-mcp rename-workspace OLD_ID NEW_ID [--json] [options]
       pg-workspace-mcp snapshot-workspace ID [--label TEXT] | list-snapshots ID | restore-workspace ID SNAPSHOT
                        | drop-snapshot ID SNAPSHOT | fork-workspace FROM TO [--snapshot SNAPSHOT]   [--json] [options]
       pg-workspace-mcp reembed (--project ID | --all) --embeddings openai|ollama [embedding options] [options]

MCP server (stdio, or Streamable HTTP with --http) that gives AI agents isolated, per-project PostgreSQL workspaces.
migrate-workspaces applies pending workspace migrations to every lagging workspace, each in its
own transaction, N at a time (default ${DEFAULT_MIGRATE_CONCURRENCY}); safe beside running servers, and a rerun resumes.
db-url prints the connection string for psql and GUI tools (the embedded store is served on a
unix socket in its data directory by whichever server process owns it; only this user can connect).
doctor checks the database against the extension files, read-only: install, migration ledgers,
lagging workspaces, registry rows without schemas and schemas without rows, PostgreSQL extensions,
the install lock, privileges. Exit code 0 healthy, 1 findings, 2 could not run.
repair applies the fixes doctor proposes, only those named: --adopt-orphans registers project_*
schemas whose tables match the workspace DDL, --forget-missing deletes the registry rows (and roles)
of workspaces whose schema is gone and drops roles no workspace goes with, --restore-indexes creates again
the vector indexes a stopped ingest left deferred, --accept-migration re-stamps an edited migration's checksum
after review. Each in its own transaction; --dry-run rolls each back. Exit code 0 done, 1 some fix
refused or failed, 2 could not run.
drop-workspace deletes a workspace for good (its schema and everything in it, its registry and ledger
rows, its role) in one transaction under its lock. Exit code 0 dropped, 1 no such workspace, 2 could not run.
reembed moves the vector columns pinned to an embedding space (those filled from text) to the
configured one, in batches; resumable (a rerun continues where it stopped), safe beside running
servers (searches of a column being moved are refused until it is done). Exit code 0 done, 1 some
column failed or interrupted, 2 could not run.
rename-workspace gives a workspace a new id: its schema (with its data), registry and ledger rows, role
and SQL sandbox, in one transaction under both ids' locks. Exit code 0 renamed, 2 refused or could not run.
snapshot-workspace, list-snapshots, restore-workspace, drop-snapshot and fork-workspace do what the
tools of the same names do (docs/snapshots.md); naming the id is the restore's confirmation. Exit
code 0 done, 1 nothing to drop, 2 refused or could not run.

Options:
  --data-dir DIR       embedded PGlite data directory (env PG_WORKSPACE_DATA_DIR;
                       default: the per-user data directory, e.g. ~/.local/share/pg-workspace-mcp)
  --extensions DIR     load a user extension directory; repeatable
                       (env PG_WORKSPACE_EXTENSIONS, colon-separated)
  --disable ID         disable an extension, e.g. codebase on a server without pgvector; repeatable
                       (env PG_WORKSPACE_DISABLED_EXTENSIONS, comma-separated)
  --http [HOST:]PORT   serve MCP over Streamable HTTP at http://HOST:PORT/mcp instead of stdio
                       (env PG_WORKSPACE_HTTP; HOST defaults to 127.0.0.1; beyond loopback
                       PG_WORKSPACE_HTTP_TOKEN is required)
  --http-session-idle-timeout SECONDS
                       with --http: close a session idle this long, i.e. no request in flight and
                       no open stream (env PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT; default
                       ${DEFAULT_HTTP_SESSION_IDLE_TIMEOUT_S}); its client gets 404 and initializes a new one
  --http-max-sessions N
                       with --http: the most sessions at once; at the cap a new one closes the least
                       recently active idle session, or is refused (503) when every one is busy
                       (env PG_WORKSPACE_HTTP_MAX_SESSIONS; default ${DEFAULT_HTTP_MAX_SESSIONS})
  --max-calls-per-workspace N
                       the most query/execute/search_vectors calls of one workspace that run at
                       once; the rest wait their turn (env PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE;
                       default ${DEFAULT_MAX_CALLS_PER_WORKSPACE}), so one workspace cannot take every pooled connection
  --workspaces-per-database N
                       with DATABASE_URL: put new workspaces in databases of their own on the same
                       server, N to a database (created as <database>_w1, _w2, ...; the server's role
                       needs CREATEDB), so per-workspace calls stay as fast at 10,000 workspaces as at 10
                       (env PG_WORKSPACE_WORKSPACES_PER_DATABASE; default: off, every workspace in
                       DATABASE_URL's database; ${SUGGESTED_WORKSPACES_PER_DATABASE} is the measured size to start from)
  --allow-project ID   accept only these project ids in every tool; repeatable
                       (env PG_WORKSPACE_ALLOWED_PROJECTS, comma-separated; default: any id)
  --allow-root DIR     index_directory may read inside DIR; repeatable (env PG_WORKSPACE_ALLOWED_ROOTS,
                       colon-separated). Needed for clients without MCP roots; with roots, a path
                       must be inside both a client root and, when set, one of these
  --embeddings none|openai|ollama
                       the embedding provider that turns text into vectors (env PG_WORKSPACE_EMBEDDINGS;
                       default none): openai is any OpenAI-compatible POST {URL}/embeddings, ollama
                       is Ollama's POST {URL}/api/embed (docs/embeddings.md)
  --embeddings-url URL its base URL (env PG_WORKSPACE_EMBEDDINGS_URL; default https://api.openai.com/v1
                       for openai, http://127.0.0.1:11434 for ollama)
  --embeddings-model NAME
                       (env PG_WORKSPACE_EMBEDDINGS_MODEL; default text-embedding-3-small for openai,
                       nomic-embed-text for ollama)
  --embeddings-dimensions N
                       numbers per vector, sent to the provider when given (env
                       PG_WORKSPACE_EMBEDDINGS_DIMENSIONS; default: the model's own, required for
                       models the server does not know)
  --embeddings-query-prefix TEXT, --embeddings-document-prefix TEXT
                       put before search queries / stored texts (env PG_WORKSPACE_EMBEDDINGS_QUERY_PREFIX,
                       PG_WORKSPACE_EMBEDDINGS_DOCUMENT_PREFIX; default: the model's, e.g.
                       "search_query: " for nomic-embed-text, else none)
  --help               show this help
  --version            show the version

Environment:
  DATABASE_URL                   use this PostgreSQL server instead of the embedded database
  PG_WORKSPACE_LOCK_TIMEOUT_MS   how long boot waits for the install lock (default ${DEFAULT_LOCK_TIMEOUT_MS})
  PG_WORKSPACE_LOG_LEVEL         debug | info | warn | error | silent (default info; logs go to stderr)
  PG_WORKSPACE_HTTP_TOKEN        with --http: clients must send "Authorization: Bearer <token>"
                                 (at least ${MIN_HTTP_TOKEN_LENGTH} characters; required when HOST is not loopback)
  PG_WORKSPACE_HTTP_ALLOWED_HOSTS  with --http: comma-separated host names the Host and Origin
                                 headers may name (default: loopback names on a loopback HOST,
                                 HOST itself otherwise; not checked on 0.0.0.0 / :: without it)
  PG_WORKSPACE_STATEMENT_TIMEOUT_MS  statement timeout of query/execute/search_vectors calls (default 10000)
  PG_WORKSPACE_MAX_ROWS          the largest max_rows a query may ask for (default 10000)
  PG_WORKSPACE_MAX_RESULT_BYTES  the most bytes of rows (as JSON) one query/execute call returns
                                 (default ${DEFAULT_MAX_RESULT_BYTES})
  PG_WORKSPACE_UPGRADE_TIMEOUT_MS  statement timeout of each statement of a workspace upgrade, where an
                                 agent's triggers may fire (ensure_workspace, migrate-workspaces; default ${DEFAULT_UPGRADE_TIMEOUT_MS}),
                                 and of snapshot and fork copies, the embedded store's idle-time
                                 VACUUM and ANALYZE, and building vector indexes an ingest deferred
  PG_WORKSPACE_INDEX_BUILD_MEMORY_MB  with DATABASE_URL: maintenance_work_mem of building the vector
                                 indexes a large ingest deferred, never below the server's own
                                 (default ${DEFAULT_INDEX_BUILD_MEMORY_MB})
  PG_WORKSPACE_MAX_SNAPSHOTS     the most snapshots one workspace keeps (default ${DEFAULT_MAX_SNAPSHOTS})
  PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES  the most bytes one workspace's snapshots take together
                                 (default ${DEFAULT_SNAPSHOT_BUDGET_BYTES}, 1 GiB)
  PG_WORKSPACE_CONNECT_WAIT_MS   with DATABASE_URL: how long a call waits for a free connection slot
                                 when PostgreSQL or the pooler has none (default ${DEFAULT_CONNECT_WAIT_MS})
  PG_WORKSPACE_MAINTENANCE_IDLE_MS  the embedded store vacuums and analyzes the tables that need it
                                 (it has no autovacuum) once no call came for this long (default ${DEFAULT_MAINTENANCE_IDLE_MS})
  PG_WORKSPACE_EMBEDDINGS_API_KEY  with --embeddings: sent as "Authorization: Bearer <key>" (never a flag)
  PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE   texts per provider request (default ${EMBEDDINGS_DEFAULTS.batchSize})
  PG_WORKSPACE_EMBEDDINGS_CONCURRENCY  provider requests in flight at once (default ${EMBEDDINGS_DEFAULTS.concurrency})
  PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS   per-request timeout (default ${EMBEDDINGS_DEFAULTS.timeoutMs})
  PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES  retries on 429, 5xx, timeouts and network errors (default ${EMBEDDINGS_DEFAULTS.maxRetries})
  PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS  longer texts are cut to this, and results say so (default ${EMBEDDINGS_DEFAULTS.maxInputChars})
`;

const extensionId = z.string().regex(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, 'an extension id (lower-case, hyphens)');

const schema = z.object({
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  dataDir: z.string().min(1),
  extensionDirs: z.array(z.string().min(1)),
  disabledExtensions: z.array(extensionId),
  lockTimeoutMs: z.coerce
    .number()
    .int('must be a whole number of milliseconds')
    .min(0)
    .max(MAX_LOCK_TIMEOUT_MS, `must be at most ${MAX_LOCK_TIMEOUT_MS} (one day)`),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']),
  allowedProjects: z.array(z.string().regex(PROJECT_ID_PATTERN, PROJECT_ID_RULES)).min(1, 'lists no project id').optional(),
  statementTimeoutMs: z.coerce.number().int('must be a whole number of milliseconds').min(1).max(86_400_000),
  maxRowsCap: z.coerce.number().int('must be a whole number').min(1).max(1_000_000, 'must be at most 1000000'),
  maxResultBytes: z.coerce
    .number()
    .int('must be a whole number of bytes')
    .min(1024, 'must be at least 1024')
    .max(MAX_RESULT_BYTES_CAP, `must be at most ${MAX_RESULT_BYTES_CAP} (256 MiB)`),
  maxCallsPerWorkspace: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(1000, 'must be at most 1000'),
  upgradeTimeoutMs: z.coerce.number().int('must be a whole number of milliseconds').min(1).max(86_400_000),
  indexBuildMemoryMb: z.coerce
    .number()
    .int('must be a whole number of megabytes')
    .min(1, 'must be at least 1')
    .max(MAX_INDEX_BUILD_MEMORY_MB, `must be at most ${MAX_INDEX_BUILD_MEMORY_MB} (64 GiB)`),
  allowedRoots: z.array(z.string().min(1)),
  maxSnapshots: z.coerce.number().int('must be a whole number').min(0).max(10_000, 'must be at most 10000'),
  snapshotBudgetBytes: z.coerce.number().int('must be a whole number of bytes').min(0).max(Number.MAX_SAFE_INTEGER),
  connectWaitMs: z.coerce.number().int('must be a whole number of milliseconds').min(0).max(600_000, 'must be at most 600000 (10 minutes)'),
  maintenanceIdleMs: z.coerce.number().int('must be a whole number of milliseconds').min(10, 'must be at least 10').max(3_600_000, 'must be at most 3600000 (an hour)'),
  workspacesPerDatabase: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(1_000_000, 'must be at most 1000000').optional(),
});

const splitList = (value: string | undefined, separator: string) =>
  (value ?? '').split(separator).map((s) => s.trim()).filter(Boolean);

/** Command-line flags win over the environment, which wins over defaults. */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  const migrate = argv[0] === 'migrate-workspaces';
  const dbUrl = argv[0] === 'db-url';
  const doctor = argv[0] === 'doctor';
  const repair = argv[0] === 'repair';
  const drop = argv[0] === 'drop-workspace';
  const rename = argv[0] === 'rename-workspace';
  const reembed = argv[0] === 'reembed';
  const snapshots = isSnapshotCommand(argv[0]) ? argv[0] : undefined;
  const subcommand = migrate || dbUrl || doctor || repair || drop || rename || reembed || snapshots !== undefined;
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: subcommand ? argv.slice(1) : [...argv],
      strict: true,
      allowPositionals: drop || rename || snapshots !== undefined,
      options: {
        ...(migrate ? { concurrency: { type: 'string' } } as const : {}),
        ...(migrate || repair ? { 'dry-run': { type: 'boolean' } } as const : {}),
        ...(doctor || repair || drop || rename || snapshots ? { json: { type: 'boolean' } } as const : {}),
        ...(snapshots === 'snapshot-workspace' ? { label: { type: 'string' } } as const : {}),
        ...(snapshots === 'fork-workspace' ? { snapshot: { type: 'string' } } as const : {}),
        ...(repair
          ? ({
              'adopt-orphans': { type: 'boolean' },
              'forget-missing': { type: 'boolean' },
              'restore-indexes': { type: 'boolean' },
              'accept-migration': { type: 'string', multiple: true },
            } as const)
          : {}),
        ...(subcommand
          ? {}
          : ({
              http: { type: 'string' },
              'http-session-idle-timeout': { type: 'string' },
              'http-max-sessions': { type: 'string' },
              'max-calls-per-workspace': { type: 'string' },
              'workspaces-per-database': { type: 'string' },
            } as const)),
        ...(subcommand && !reembed ? {} : EMBEDDINGS_FLAGS),
        ...(reembed ? ({ project: { type: 'string' }, all: { type: 'boolean' } } as const) : {}),
        'data-dir': { type: 'string' },
        extensions: { type: 'string', multiple: true },
        disable: { type: 'string', multiple: true },
        'allow-project': { type: 'string', multiple: true },
        'allow-root': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };

  const parsed = schema.safeParse({
    databaseUrl: env['DATABASE_URL'] || undefined,
    dataDir: path.resolve(values['data-dir'] ?? (env['PG_WORKSPACE_DATA_DIR'] || envPaths('pg-workspace-mcp', { suffix: '' }).data)),
    extensionDirs: [...splitList(env['PG_WORKSPACE_EXTENSIONS'], ':'), ...(values.extensions ?? [])].map((d) => path.resolve(d)),
    disabledExtensions: [...splitList(env['PG_WORKSPACE_DISABLED_EXTENSIONS'], ','), ...(values.disable ?? [])],
    lockTimeoutMs: env['PG_WORKSPACE_LOCK_TIMEOUT_MS'] || DEFAULT_LOCK_TIMEOUT_MS,
    logLevel: env['PG_WORKSPACE_LOG_LEVEL'] || 'info',
    allowedProjects:
      values['allow-project'] || env['PG_WORKSPACE_ALLOWED_PROJECTS'] !== undefined
        ? [...splitList(env['PG_WORKSPACE_ALLOWED_PROJECTS'], ','), ...(values['allow-project'] ?? [])]
        : undefined,
    statementTimeoutMs: env['PG_WORKSPACE_STATEMENT_TIMEOUT_MS'] || 10_000,
    maxRowsCap: env['PG_WORKSPACE_MAX_ROWS'] || 10_000,
    maxResultBytes: env['PG_WORKSPACE_MAX_RESULT_BYTES'] || DEFAULT_MAX_RESULT_BYTES,
    maxCallsPerWorkspace:
      ('max-calls-per-workspace' in values ? values['max-calls-per-workspace'] : undefined) ??
      (env['PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE'] || DEFAULT_MAX_CALLS_PER_WORKSPACE),
    upgradeTimeoutMs: env['PG_WORKSPACE_UPGRADE_TIMEOUT_MS'] || DEFAULT_UPGRADE_TIMEOUT_MS,
    indexBuildMemoryMb: env['PG_WORKSPACE_INDEX_BUILD_MEMORY_MB'] || DEFAULT_INDEX_BUILD_MEMORY_MB,
    allowedRoots: [...splitList(env['PG_WORKSPACE_ALLOWED_ROOTS'], ':'), ...(values['allow-root'] ?? [])].map((d) =>
      path.resolve(d),
    ),
    maxSnapshots: env['PG_WORKSPACE_MAX_SNAPSHOTS'] || DEFAULT_MAX_SNAPSHOTS,
    snapshotBudgetBytes: env['PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES'] || DEFAULT_SNAPSHOT_BUDGET_BYTES,
    connectWaitMs: env['PG_WORKSPACE_CONNECT_WAIT_MS'] || DEFAULT_CONNECT_WAIT_MS,
    maintenanceIdleMs: env['PG_WORKSPACE_MAINTENANCE_IDLE_MS'] || DEFAULT_MAINTENANCE_IDLE_MS,
    // Serve only: the commands find the member databases in the home database's placements.
    workspacesPerDatabase: subcommand
      ? undefined
      : (('workspaces-per-database' in values ? values['workspaces-per-database'] : undefined) ??
        (env['PG_WORKSPACE_WORKSPACES_PER_DATABASE'] || undefined)),
  });
  if (!parsed.success) {
    const names: Record<string, string> = {
      databaseUrl: 'DATABASE_URL',
      dataDir: '--data-dir / PG_WORKSPACE_DATA_DIR',
      extensionDirs: '--extensions / PG_WORKSPACE_EXTENSIONS',
      disabledExtensions: '--disable / PG_WORKSPACE_DISABLED_EXTENSIONS',
      lockTimeoutMs: 'PG_WORKSPACE_LOCK_TIMEOUT_MS',
      logLevel: 'PG_WORKSPACE_LOG_LEVEL',
      allowedProjects: '--allow-project / PG_WORKSPACE_ALLOWED_PROJECTS',
      statementTimeoutMs: 'PG_WORKSPACE_STATEMENT_TIMEOUT_MS',
      maxRowsCap: 'PG_WORKSPACE_MAX_ROWS',
      maxResultBytes: 'PG_WORKSPACE_MAX_RESULT_BYTES',
      maxCallsPerWorkspace: '--max-calls-per-workspace / PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE',
      upgradeTimeoutMs: 'PG_WORKSPACE_UPGRADE_TIMEOUT_MS',
      indexBuildMemoryMb: 'PG_WORKSPACE_INDEX_BUILD_MEMORY_MB',
      allowedRoots: '--allow-root / PG_WORKSPACE_ALLOWED_ROOTS',
      maxSnapshots: 'PG_WORKSPACE_MAX_SNAPSHOTS',
      snapshotBudgetBytes: 'PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES',
      connectWaitMs: 'PG_WORKSPACE_CONNECT_WAIT_MS',
      maintenanceIdleMs: 'PG_WORKSPACE_MAINTENANCE_IDLE_MS',
      workspacesPerDatabase: '--workspaces-per-database / PG_WORKSPACE_WORKSPACES_PER_DATABASE',
    };
    const problems = parsed.error.issues.map((i) => `  ${names[String(i.path[0])] ?? i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}\n\nRun with --help for the options.`);
  }
  const config = { ...parsed.data, databaseUrl: parsed.data.databaseUrl, allowedProjects: parsed.data.allowedProjects };
  if (config.workspacesPerDatabase !== undefined && !config.databaseUrl) {
    throw new ConfigError(
      '--workspaces-per-database / PG_WORKSPACE_WORKSPACES_PER_DATABASE spreads workspaces over the databases of a PostgreSQL ' +
        'server: set DATABASE_URL to one, or leave the setting out (the embedded store is a single database).',
    );
  }
  if (dbUrl) return { kind: 'db-url', config };
  if (doctor) return { kind: 'doctor', config, json: values.json === true };
  if (drop || rename) {
    const wanted = drop ? 1 : 2;
    const valid = (id: string) => id.length <= PROJECT_ID_MAX_LENGTH && PROJECT_ID_PATTERN.test(id);
    if (positionals.length !== wanted || !positionals.every(valid)) {
      throw new ConfigError(
        `${argv[0]} takes ${drop ? 'exactly one project id' : 'two project ids, the old and the new'}` +
          `${positionals.length > 0 ? `, got ${JSON.stringify(positionals.join(' '))}` : ''}. ${PROJECT_ID_RULES}`,
      );
    }
    const [first, second] = positionals as [string, string];
    if (drop) return { kind: 'drop-workspace', config, json: values.json === true, projectId: first };
    return { kind: 'rename-workspace', config, json: values.json === true, from: first, to: second };
  }
  if (snapshots) return { kind: 'snapshots', config, json: values.json === true, request: snapshotRequest(snapshots, positionals, values) };
  if (repair) {
    const fixes = {
      adoptOrphans: values['adopt-orphans'] === true,
      forgetMissing: values['forget-missing'] === true,
      restoreIndexes: values['restore-indexes'] === true,
      acceptMigrations: (values['accept-migration'] as string[] | undefined) ?? [],
    };
    if (!fixes.adoptOrphans && !fixes.forgetMissing && !fixes.restoreIndexes && fixes.acceptMigrations.length === 0) {
      throw new ConfigError(
        'repair changes only what a flag names: give --adopt-orphans, --forget-missing, --restore-indexes and/or --accept-migration EXT/NAME ' +
          '(run `pg-workspace-mcp doctor` to see what needs repair).',
      );
    }
    return { kind: 'repair', config, json: values.json === true, dryRun: values['dry-run'] === true, ...fixes };
  }
  const flag = (name: 'http' | 'http-session-idle-timeout' | 'http-max-sessions' | 'project' | keyof EmbeddingsFlags) =>
    name in values ? (values[name as keyof typeof values] as string | undefined) : undefined;
  const embeddingFlags = () => Object.fromEntries(Object.keys(EMBEDDINGS_FLAGS).map((name) => [name, flag(name as keyof EmbeddingsFlags)]));
  if (reembed) {
    const projectId = flag('project');
    const all = 'all' in values && values.all === true;
    if ((projectId === undefined) === !all) {
      throw new ConfigError('reembed takes --project ID (one workspace) or --all (every workspace), one of the two.');
    }
    if (projectId !== undefined && !(projectId.length <= PROJECT_ID_MAX_LENGTH && PROJECT_ID_PATTERN.test(projectId))) {
      throw new ConfigError(`--project: ${JSON.stringify(projectId)} is not a project id. ${PROJECT_ID_RULES}`);
    }
    const embeddings = embeddingsConfig(embeddingFlags(), env);
    if (!embeddings) {
      throw new ConfigError(
        'reembed moves columns to the configured embedding space: give the new settings (--embeddings openai|ollama, ' +
          'with --embeddings-model and the others as needed, or their PG_WORKSPACE_EMBEDDINGS* variables).',
      );
    }
    return { kind: 'reembed', config: { ...config, embeddings }, projectId };
  }
  if (!migrate) {
    const address = flag('http') ?? (env['PG_WORKSPACE_HTTP'] || undefined);
    const sessionFlags = { idleTimeout: flag('http-session-idle-timeout'), maxSessions: flag('http-max-sessions') };
    const http = parseHttp(address, env, sessionFlags);
    return { kind: 'serve', config: { ...config, embeddings: embeddingsConfig(embeddingFlags(), env) }, http };
  }
  const concurrency = z.coerce.number().int().min(1).max(MAX_MIGRATE_CONCURRENCY).safeParse(values.concurrency ?? DEFAULT_MIGRATE_CONCURRENCY);
  if (!concurrency.success) {
    throw new ConfigError(`--concurrency must be a whole number from 1 to ${MAX_MIGRATE_CONCURRENCY}, got ${String(values.concurrency)}.`);
  }
  return { kind: 'migrate-workspaces', config, concurrency: concurrency.data, dryRun: values['dry-run'] === true };
}

function embeddingsConfig(flags: EmbeddingsFlags, env: NodeJS.ProcessEnv): EmbeddingsConfig | undefined {
  try {
    return parseEmbeddingsConfig(flags, env);
  } catch (error) {
    if (error instanceof EmbeddingsConfigError) throw new ConfigError(error.message);
    throw error;
  }
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A whole number from `min` to `max`, else a ConfigError naming the setting and the expected range. */
function wholeNumber(setting: string, given: string | undefined, fallback: number, min: number, max: number, what: string): number {
  const parsed = z.coerce.number().int().min(min).max(max).safeParse(given ?? fallback);
  if (!parsed.success) throw new ConfigError(`${setting}: must be ${what} from ${min} to ${max}, got "${given}".`);
  return parsed.data;
}

function parseHttp(
  address: string | undefined,
  env: NodeJS.ProcessEnv,
  sessionFlags: { idleTimeout: string | undefined; maxSessions: string | undefined },
): HttpConfig | undefined {
  if (address === undefined) {
    const stray = sessionFlags.idleTimeout !== undefined ? '--http-session-idle-timeout' : sessionFlags.maxSessions !== undefined ? '--http-max-sessions' : undefined;
    if (stray) throw new ConfigError(`${stray} applies to the HTTP server only: give --http [HOST:]PORT too (or PG_WORKSPACE_HTTP).`);
    return undefined;
  }
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?(\d{1,5})$/.exec(address.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65_535) {
    throw new ConfigError(`--http / PG_WORKSPACE_HTTP: expected [HOST:]PORT (e.g. 8080, 127.0.0.1:8080, [::1]:8080), got "${address}".`);
  }
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  const token = env['PG_WORKSPACE_HTTP_TOKEN'] || undefined;
  if (token !== undefined && token.length < MIN_HTTP_TOKEN_LENGTH) {
    throw new ConfigError(`PG_WORKSPACE_HTTP_TOKEN: must be at least ${MIN_HTTP_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`).`);
  }
  if (!isLoopback(host) && token === undefined) {
    throw new ConfigError(
      `--http ${address} listens beyond this machine, so it needs a bearer token: set PG_WORKSPACE_HTTP_TOKEN ` +
        '(e.g. to the output of `openssl rand -hex 32`) and have clients send "Authorization: Bearer <token>". ' +
        'Or bind to loopback (--http 127.0.0.1:PORT).',
    );
  }
  const listed = splitList(env['PG_WORKSPACE_HTTP_ALLOWED_HOSTS'], ',').map((h) => h.toLowerCase());
  const wildcard = host === '0.0.0.0' || host === '::';
  const own = isLoopback(host) ? LOOPBACK_NAMES : wildcard ? [] : [host.includes(':') ? `[${host}]` : host];
  const idleTimeoutS = wholeNumber(
    '--http-session-idle-timeout / PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT',
    sessionFlags.idleTimeout ?? (env['PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT'] || undefined),
    DEFAULT_HTTP_SESSION_IDLE_TIMEOUT_S,
    1,
    MAX_HTTP_SESSION_IDLE_TIMEOUT_S,
    'a whole number of seconds',
  );
  const maxSessions = wholeNumber(
    '--http-max-sessions / PG_WORKSPACE_HTTP_MAX_SESSIONS',
    sessionFlags.maxSessions ?? (env['PG_WORKSPACE_HTTP_MAX_SESSIONS'] || undefined),
    DEFAULT_HTTP_MAX_SESSIONS,
    1,
    MAX_HTTP_MAX_SESSIONS,
    'a whole number',
  );
  return {
    host,
    port,
    token,
    allowedHosts: listed.length > 0 ? [...new Set([...own, ...listed])] : own,
    sessionIdleTimeoutMs: idleTimeoutS * 1000,
    maxSessions,
  };
}

/** A snapshot command's arguments, checked: project ids by their rules, snapshot numbers as positive integers. */
function snapshotRequest(action: SnapshotRequest['action'], positionals: readonly string[], flags: { label?: unknown; snapshot?: unknown }): SnapshotRequest {
  const shape = SNAPSHOT_COMMANDS[action];
  const number = (text: string) => (/^[1-9][0-9]{0,8}$/.test(text) ? Number(text) : undefined);
  const fits = positionals.length === shape.length &&
    shape.every((kind, i) => {
      const value = positionals[i] as string;
      return kind === 'ID' ? value.length <= PROJECT_ID_MAX_LENGTH && PROJECT_ID_PATTERN.test(value) : number(value) !== undefined;
    });
  const snapshotFlag = typeof flags.snapshot === 'string' ? number(flags.snapshot) : undefined;
  if (!fits || (flags.snapshot !== undefined && snapshotFlag === undefined)) {
    throw new ConfigError(
      `${action} takes ${shape.join(' ')}${action === 'fork-workspace' ? ' (FROM TO) [--snapshot SNAPSHOT]' : ''}` +
        `${positionals.length > 0 ? `, got ${JSON.stringify(positionals.join(' '))}` : ''}: a SNAPSHOT is a number list-snapshots shows. ${PROJECT_ID_RULES}`,
    );
  }
  const [first, second] = positionals as [string, string];
  switch (action) {
    case 'snapshot-workspace':
      return { action, projectId: first, label: typeof flags.label === 'string' ? flags.label : undefined };
    case 'list-snapshots':
      return { action, projectId: first };
    case 'restore-workspace':
    case 'drop-snapshot':
      return { action, projectId: first, snapshot: Number(second) };
    case 'fork-workspace':
      return { action, from: first, to: second, snapshot: snapshotFlag };
  }
}
