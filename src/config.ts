import path from 'node:path';
import { parseArgs } from 'node:util';
import envPaths from 'env-paths';
import * as z from 'zod';
import type { LogLevel } from './logger.js';
import { PROJECT_ID_PATTERN, PROJECT_ID_RULES } from './workspaces/project-id.js';

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
}

export type Command =
  | { kind: 'serve'; config: Config }
  | { kind: 'migrate-workspaces'; config: Config; concurrency: number; dryRun: boolean }
  | { kind: 'help' }
  | { kind: 'version' };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const USAGE = `Usage: pg-workspace-mcp [options]
       pg-workspace-mcp migrate-workspaces [--concurrency N] [--dry-run] [options]

MCP server (stdio) that gives AI agents isolated, per-project PostgreSQL workspaces.
migrate-workspaces applies pending workspace migrations to every lagging workspace, each in its
own transaction, N at a time (default 4); safe beside running servers, and a rerun resumes.

Options:
  --data-dir DIR       embedded PGlite data directory (env PG_WORKSPACE_DATA_DIR;
                       default: the per-user data directory, e.g. ~/.local/share/pg-workspace-mcp)
  --extensions DIR     load a user extension directory; repeatable
                       (env PG_WORKSPACE_EXTENSIONS, colon-separated)
  --disable ID         disable an extension, e.g. codebase on a server without pgvector; repeatable
                       (env PG_WORKSPACE_DISABLED_EXTENSIONS, comma-separated)
  --allow-project ID   accept only these project ids in every tool; repeatable
                       (env PG_WORKSPACE_ALLOWED_PROJECTS, comma-separated; default: any id)
  --help               show this help
  --version            show the version

Environment:
  DATABASE_URL                   use this PostgreSQL server instead of the embedded database
  PG_WORKSPACE_LOCK_TIMEOUT_MS   how long boot waits for the install lock (default 60000)
  PG_WORKSPACE_LOG_LEVEL         debug | info | warn | error | silent (default info; logs go to stderr)
  PG_WORKSPACE_STATEMENT_TIMEOUT_MS  statement timeout of query/execute calls (default 10000)
  PG_WORKSPACE_MAX_ROWS          the largest max_rows a query may ask for (default 10000)
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
    .max(86_400_000, 'must be at most 86400000 (one day)'),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']),
  allowedProjects: z.array(z.string().regex(PROJECT_ID_PATTERN, PROJECT_ID_RULES)).min(1, 'lists no project id').optional(),
  statementTimeoutMs: z.coerce.number().int('must be a whole number of milliseconds').min(1).max(86_400_000),
  maxRowsCap: z.coerce.number().int('must be a whole number').min(1).max(1_000_000, 'must be at most 1000000'),
});

const splitList = (value: string | undefined, separator: string) =>
  (value ?? '').split(separator).map((s) => s.trim()).filter(Boolean);

/** Command-line flags win over the environment, which wins over defaults. */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  const migrate = argv[0] === 'migrate-workspaces';
  let values;
  try {
    ({ values } = parseArgs({
      args: migrate ? argv.slice(1) : [...argv],
      strict: true,
      options: {
        ...(migrate ? { concurrency: { type: 'string' }, 'dry-run': { type: 'boolean' } } as const : {}),
        'data-dir': { type: 'string' },
        extensions: { type: 'string', multiple: true },
        disable: { type: 'string', multiple: true },
        'allow-project': { type: 'string', multiple: true },
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
    lockTimeoutMs: env['PG_WORKSPACE_LOCK_TIMEOUT_MS'] || 60_000,
    logLevel: env['PG_WORKSPACE_LOG_LEVEL'] || 'info',
    allowedProjects:
      values['allow-project'] || env['PG_WORKSPACE_ALLOWED_PROJECTS'] !== undefined
        ? [...splitList(env['PG_WORKSPACE_ALLOWED_PROJECTS'], ','), ...(values['allow-project'] ?? [])]
        : undefined,
    statementTimeoutMs: env['PG_WORKSPACE_STATEMENT_TIMEOUT_MS'] || 10_000,
    maxRowsCap: env['PG_WORKSPACE_MAX_ROWS'] || 10_000,
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
    };
    const problems = parsed.error.issues.map((i) => `  ${names[String(i.path[0])] ?? i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}\n\nRun with --help for the options.`);
  }
  const config = { ...parsed.data, databaseUrl: parsed.data.databaseUrl, allowedProjects: parsed.data.allowedProjects };
  if (!migrate) return { kind: 'serve', config };
  const concurrency = z.coerce.number().int().min(1).max(64).safeParse(values.concurrency ?? 4);
  if (!concurrency.success) throw new ConfigError(`--concurrency must be a whole number from 1 to 64, got ${String(values.concurrency)}.`);
  return { kind: 'migrate-workspaces', config, concurrency: concurrency.data, dryRun: values['dry-run'] === true };
}
