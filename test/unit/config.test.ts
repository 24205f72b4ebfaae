import path from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseCommand, USAGE, type Config } from '../../src/config.js';

const serve = (argv: string[], env: Record<string, string> = {}): Config => {
  const command = parseCommand(argv, env);
  if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`);
  return command.config;
};

/** The ConfigError message, asserting that it is one. */
const failure = (argv: string[], env: Record<string, string> = {}): string => {
  try {
    parseCommand(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(argv)} ${JSON.stringify(env)} to be refused`);
};

describe('parseCommand', () => {
  it('serves with defaults when nothing is set', () => {
    const config = serve([]);
    expect(config).toMatchObject({ databaseUrl: undefined, extensionDirs: [], disabledExtensions: [], lockTimeoutMs: 60_000, logLevel: 'info', indexBuildMemoryMb: 256 });
    expect(path.isAbsolute(config.dataDir)).toBe(true);
  });

  it('reads the environment, and flags win over it (lists are added to)', () => {
    const env = {
      DATABASE_URL: 'postgresql://u@h/db',
      PG_WORKSPACE_DATA_DIR: '/from/env',
      PG_WORKSPACE_EXTENSIONS: '/a: /b :',
      PG_WORKSPACE_DISABLED_EXTENSIONS: 'codebase, notes',
      PG_WORKSPACE_LOCK_TIMEOUT_MS: '1500',
      PG_WORKSPACE_LOG_LEVEL: 'debug',
      PG_WORKSPACE_ALLOWED_PROJECTS: 'client-a, client-b',
      PG_WORKSPACE_STATEMENT_TIMEOUT_MS: '2500',
      PG_WORKSPACE_MAX_ROWS: '500',
      PG_WORKSPACE_MAX_RESULT_BYTES: '65536',
      PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE: '3',
      PG_WORKSPACE_UPGRADE_TIMEOUT_MS: '90000',
      PG_WORKSPACE_INDEX_BUILD_MEMORY_MB: '512',
      PG_WORKSPACE_ALLOWED_ROOTS: '/src/a:/src/b',
      PG_WORKSPACE_MAX_SNAPSHOTS: '3',
      PG_WORKSPACE_SNAPSHOT_BUDGET_BYTES: '1048576',
      PG_WORKSPACE_CONNECT_WAIT_MS: '3000',
      PG_WORKSPACE_MAINTENANCE_IDLE_MS: '250',
    };
    expect(serve([], env)).toEqual({
      databaseUrl: 'postgresql://u@h/db',
      dataDir: '/from/env',
      extensionDirs: ['/a', '/b'],
      disabledExtensions: ['codebase', 'notes'],
      lockTimeoutMs: 1500,
      logLevel: 'debug',
      allowedProjects: ['client-a', 'client-b'],
      statementTimeoutMs: 2500,
      maxRowsCap: 500,
      maxResultBytes: 65536,
      maxCallsPerWorkspace: 3,
      upgradeTimeoutMs: 90_000,
      indexBuildMemoryMb: 512,
      allowedRoots: ['/src/a', '/src/b'],
      maxSnapshots: 3,
      snapshotBudgetBytes: 1048576,
      connectWaitMs: 3000,
      maintenanceIdleMs: 250,
    });
    const flagged = serve(
      ['--data-dir', 'rel/dir', '--extensions', '/c', '--disable', 'extra', '--extensions', '/d', '--allow-project', 'client-c', '--allow-root', 'rel/root', '--max-calls-per-workspace', '7'],
      env,
    );
    expect(flagged.allowedRoots).toEqual(['/src/a', '/src/b', path.resolve('rel/root')]);
    expect(flagged.maxCallsPerWorkspace).toBe(7);
    expect(flagged.allowedProjects).toEqual(['client-a', 'client-b', 'client-c']);
    expect(flagged.dataDir).toBe(path.resolve('rel/dir'));
    expect(flagged.extensionDirs).toEqual(['/a', '/b', '/c', '/d']);
    expect(flagged.disabledExtensions).toEqual(['codebase', 'notes', 'extra']);
  });

  it('treats an empty variable as unset', () => {
    expect(serve([], { DATABASE_URL: '', PG_WORKSPACE_LOCK_TIMEOUT_MS: '', PG_WORKSPACE_LOG_LEVEL: '' })).toMatchObject({
      databaseUrl: undefined,
      lockTimeoutMs: 60_000,
      logLevel: 'info',
    });
  });

  it('names the setting in every refusal, with what a good value looks like', () => {
    expect(failure([], { DATABASE_URL: 'mysql://h/db' })).toContain('DATABASE_URL: must be a postgres:// or postgresql:// URL');
    expect(failure([], { PG_WORKSPACE_LOCK_TIMEOUT_MS: '1.5' })).toContain('PG_WORKSPACE_LOCK_TIMEOUT_MS: must be a whole number of milliseconds');
    expect(failure([], { PG_WORKSPACE_LOCK_TIMEOUT_MS: '86400001' })).toContain('PG_WORKSPACE_LOCK_TIMEOUT_MS: must be at most 86400000 (one day)');
    expect(failure([], { PG_WORKSPACE_LOCK_TIMEOUT_MS: '-1' })).toContain('PG_WORKSPACE_LOCK_TIMEOUT_MS:');
    expect(failure([], { PG_WORKSPACE_CONNECT_WAIT_MS: '-5' })).toContain('PG_WORKSPACE_CONNECT_WAIT_MS:');
    expect(failure([], { PG_WORKSPACE_INDEX_BUILD_MEMORY_MB: '65537' })).toContain('PG_WORKSPACE_INDEX_BUILD_MEMORY_MB: must be at most 65536 (64 GiB)');
    expect(failure([], { PG_WORKSPACE_MAINTENANCE_IDLE_MS: '5' })).toContain('PG_WORKSPACE_MAINTENANCE_IDLE_MS: must be at least 10');
    expect(failure([], { PG_WORKSPACE_LOG_LEVEL: 'verbose' })).toMatch(/PG_WORKSPACE_LOG_LEVEL: .*"debug"\|"info"\|"warn"\|"error"\|"silent"/);
    expect(failure(['--disable', 'Bad_Id'])).toContain('--disable / PG_WORKSPACE_DISABLED_EXTENSIONS: an extension id (lower-case, hyphens)');
    expect(failure(['--max-calls-per-workspace', '0'])).toContain('--max-calls-per-workspace / PG_WORKSPACE_MAX_CALLS_PER_WORKSPACE: must be at least 1');
    expect(failure([], { PG_WORKSPACE_DISABLED_EXTENSIONS: 'ok,NOPE' })).toContain('--disable / PG_WORKSPACE_DISABLED_EXTENSIONS');
  });

  it('spreads workspaces over databases only with DATABASE_URL, the flag winning over the environment', () => {
    const pg = { DATABASE_URL: 'postgresql://h/db' };
    expect(serve([], pg).workspacesPerDatabase).toBeUndefined();
    expect(serve([], { ...pg, PG_WORKSPACE_WORKSPACES_PER_DATABASE: '50' }).workspacesPerDatabase).toBe(50);
    expect(serve(['--workspaces-per-database', '7'], { ...pg, PG_WORKSPACE_WORKSPACES_PER_DATABASE: '50' }).workspacesPerDatabase).toBe(7);
    expect(failure(['--workspaces-per-database', '0'], pg)).toContain('--workspaces-per-database / PG_WORKSPACE_WORKSPACES_PER_DATABASE: must be at least 1');
    expect(failure(['--workspaces-per-database', '100'])).toContain('set DATABASE_URL');
    // The commands find the member databases in the home database: the setting is the server's.
    const doctor = parseCommand(['doctor'], { ...pg, PG_WORKSPACE_WORKSPACES_PER_DATABASE: '50' });
    expect(doctor.kind === 'doctor' && doctor.config.workspacesPerDatabase).toBeUndefined();
  });

  it('reports every bad setting at once, then points at --help', () => {
    const message = failure([], { DATABASE_URL: 'nope', PG_WORKSPACE_LOG_LEVEL: 'loud' });
    expect(message).toMatch(/^Invalid configuration:\n {2}DATABASE_URL: .*\n {2}PG_WORKSPACE_LOG_LEVEL: .*\n\nRun with --help for the options\.$/s);
  });

  it('refuses an unknown flag or a flag without its value, followed by the usage', () => {
    expect(failure(['--nope'])).toMatch(/^Unknown option '--nope'/);
    expect(failure(['--nope'])).toContain(USAGE);
    expect(failure(['--data-dir'])).toMatch(/--data-dir <value>' argument missing/);
    // --http belongs to serving and the migration flags to migrate-workspaces.
    expect(failure(['migrate-workspaces', '--http', '8080'])).toMatch(/Unknown option '--http'/);
    expect(failure(['--dry-run'])).toMatch(/Unknown option '--dry-run'/);
  });

  it('answers --help and --version before reading any setting', () => {
    expect(parseCommand(['--help'], { DATABASE_URL: 'bad' })).toEqual({ kind: 'help' });
    expect(parseCommand(['-h'], {})).toEqual({ kind: 'help' });
    expect(parseCommand(['--version'], { PG_WORKSPACE_LOG_LEVEL: 'bad' })).toEqual({ kind: 'version' });
    expect(parseCommand(['migrate-workspaces', '-v'], {})).toEqual({ kind: 'version' });
  });

  it('parses migrate-workspaces with its concurrency (1 to 64, default 4) and --dry-run', () => {
    expect(parseCommand(['migrate-workspaces'], {})).toMatchObject({ kind: 'migrate-workspaces', concurrency: 4, dryRun: false });
    expect(parseCommand(['migrate-workspaces', '--concurrency', '64', '--dry-run'], {})).toMatchObject({ concurrency: 64, dryRun: true });
    for (const bad of ['0', '65', '2.5', 'four']) {
      expect(failure(['migrate-workspaces', '--concurrency', bad])).toBe(`--concurrency must be a whole number from 1 to 64, got ${bad}.`);
    }
    expect(failure(['migrate-workspaces'], { DATABASE_URL: 'x' })).toContain('DATABASE_URL:');
  });

  it('parses doctor and repair, whose fixes are only those a flag names', () => {
    expect(parseCommand(['doctor'], {})).toMatchObject({ kind: 'doctor', json: false });
    expect(parseCommand(['doctor', '--json', '--data-dir', '/d'], {})).toMatchObject({ kind: 'doctor', json: true, config: { dataDir: '/d' } });
    expect(parseCommand(['repair', '--forget-missing'], {})).toMatchObject({
      kind: 'repair', json: false, dryRun: false, adoptOrphans: false, forgetMissing: true, restoreIndexes: false, acceptMigrations: [],
    });
    expect(parseCommand(['repair', '--restore-indexes'], {})).toMatchObject({ kind: 'repair', restoreIndexes: true, forgetMissing: false });
    expect(parseCommand(['repair', '--adopt-orphans', '--accept-migration', 'a/0001_x', '--accept-migration', 'b/0002_y', '--dry-run', '--json'], {}))
      .toMatchObject({ adoptOrphans: true, forgetMissing: false, acceptMigrations: ['a/0001_x', 'b/0002_y'], dryRun: true, json: true });
    expect(failure(['repair'])).toContain('repair changes only what a flag names');
    expect(failure(['repair', '--dry-run'])).toContain('repair changes only what a flag names');
    expect(failure(['doctor', '--dry-run'])).toMatch(/Unknown option '--dry-run'/);
    expect(failure(['doctor', '--forget-missing'])).toMatch(/Unknown option '--forget-missing'/);
    expect(failure(['--json'])).toMatch(/Unknown option '--json'/);
  });
});

const http = (argv: string[], env: Record<string, string> = {}) => {
  const command = parseCommand(argv, env);
  if (command.kind !== 'serve') throw new Error('expected serve');
  return command.http;
};

describe('--http configuration', () => {
  it('is off by default (stdio) and defaults to loopback with its own host names allowed', () => {
    expect(http([])).toBeUndefined();
    expect(http(['--http', '8080'])).toEqual({
      host: '127.0.0.1',
      port: 8080,
      token: undefined,
      allowedHosts: ['localhost', '127.0.0.1', '[::1]'],
      sessionIdleTimeoutMs: 1_800_000,
      maxSessions: 100,
    });
    expect(http([], { PG_WORKSPACE_HTTP: '[::1]:9000' })).toMatchObject({ host: '::1', port: 9000 });
    expect(http(['--http', 'localhost:81'], { PG_WORKSPACE_HTTP: '9000' })).toMatchObject({ host: 'localhost', port: 81 });
  });

  it('needs a token of 16+ characters beyond loopback, and then checks that host', () => {
    expect(() => http(['--http', '0.0.0.0:8080'])).toThrow(
      /^--http 0\.0\.0\.0:8080 listens beyond this machine, so it needs a bearer token: set PG_WORKSPACE_HTTP_TOKEN .*Or bind to loopback/,
    );
    expect(() => http(['--http', '127.0.0.1:8080'], { PG_WORKSPACE_HTTP_TOKEN: 'short' })).toThrow(
      new ConfigError('PG_WORKSPACE_HTTP_TOKEN: must be at least 16 characters (e.g. `openssl rand -hex 32`).'),
    );
    const token = 'x'.repeat(32);
    expect(http(['--http', '0.0.0.0:8080'], { PG_WORKSPACE_HTTP_TOKEN: token })).toMatchObject({ token, allowedHosts: [] });
    expect(http(['--http', '10.0.0.5:8080'], { PG_WORKSPACE_HTTP_TOKEN: token, PG_WORKSPACE_HTTP_ALLOWED_HOSTS: 'mcp.example' })).toMatchObject({
      allowedHosts: ['10.0.0.5', 'mcp.example'],
    });
  });

  it('rejects a malformed address with the expected form', () => {
    for (const bad of ['', 'host', '70000', 'a:b:8080', '127.0.0.1:']) {
      expect(() => http(['--http', bad]), bad).toThrow(ConfigError);
      expect(() => http(['--http', bad]), bad).toThrow(`--http / PG_WORKSPACE_HTTP: expected [HOST:]PORT (e.g. 8080, 127.0.0.1:8080, [::1]:8080), got "${bad}".`);
    }
  });

  it('reads the session idle timeout (seconds) and cap from the environment, and flags win', () => {
    const env = { PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: '90', PG_WORKSPACE_HTTP_MAX_SESSIONS: '7' };
    expect(http(['--http', '8080'], env)).toMatchObject({ sessionIdleTimeoutMs: 90_000, maxSessions: 7 });
    expect(http(['--http', '8080', '--http-session-idle-timeout', '2', '--http-max-sessions', '1'], env)).toMatchObject({
      sessionIdleTimeoutMs: 2000,
      maxSessions: 1,
    });
    expect(http(['--http', '8080'], { PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: '', PG_WORKSPACE_HTTP_MAX_SESSIONS: '' })).toMatchObject({
      sessionIdleTimeoutMs: 1_800_000,
      maxSessions: 100,
    });
    // Without --http the variables have nothing to configure (stdio has one session, for life).
    expect(http([], { PG_WORKSPACE_HTTP_MAX_SESSIONS: 'many' })).toBeUndefined();
  });

  it('refuses a session timeout or cap that is not a whole number in range, naming the setting', () => {
    for (const bad of ['0', '1.5', 'soon', '604801']) {
      expect(failure(['--http', '8080', '--http-session-idle-timeout', bad])).toBe(
        `--http-session-idle-timeout / PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: must be a whole number of seconds from 1 to 604800, got "${bad}".`,
      );
    }
    for (const bad of ['-5', '30m']) {
      expect(failure(['--http', '8080'], { PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: bad })).toContain(
        `PG_WORKSPACE_HTTP_SESSION_IDLE_TIMEOUT: must be a whole number of seconds from 1 to 604800, got "${bad}".`,
      );
    }
    for (const bad of ['0', '100001', '2.5', 'lots']) {
      expect(failure(['--http', '8080'], { PG_WORKSPACE_HTTP_MAX_SESSIONS: bad })).toBe(
        `--http-max-sessions / PG_WORKSPACE_HTTP_MAX_SESSIONS: must be a whole number from 1 to 100000, got "${bad}".`,
      );
    }
  });

  it('refuses the session flags without --http, and on a subcommand', () => {
    expect(failure(['--http-max-sessions', '5'])).toBe('--http-max-sessions applies to the HTTP server only: give --http [HOST:]PORT too (or PG_WORKSPACE_HTTP).');
    expect(failure(['--http-session-idle-timeout', '60'])).toContain('--http-session-idle-timeout applies to the HTTP server only');
    expect(http(['--http-max-sessions', '5'], { PG_WORKSPACE_HTTP: '8080' })).toMatchObject({ maxSessions: 5 });
    expect(failure(['doctor', '--http-max-sessions', '5'])).toMatch(/Unknown option '--http-max-sessions'/);
  });
});

describe('--embeddings configuration', () => {
  it('is off by default', () => {
    expect(serve([]).embeddings).toBeUndefined();
    expect(serve(['--embeddings', 'none'], { PG_WORKSPACE_EMBEDDINGS: 'ollama' }).embeddings).toBeUndefined();
  });

  it('ollama: a local nomic-embed-text, whose length and task prefixes the server knows', () => {
    const embeddings = serve([], { PG_WORKSPACE_EMBEDDINGS: 'ollama' }).embeddings;
    expect(embeddings).toEqual({
      space: { provider: 'ollama', model: 'nomic-embed-text', dimensions: 768, queryPrefix: 'search_query: ', documentPrefix: 'search_document: ' },
      url: 'http://127.0.0.1:11434/',
      sendDimensions: false,
      apiKey: undefined,
      batchSize: 64,
      concurrency: 4,
      timeoutMs: 60_000,
      maxRetries: 5,
      maxInputChars: 8000,
    });
  });

  it('openai: api.openai.com with text-embedding-3-small; flags win over the environment', () => {
    expect(serve(['--embeddings', 'openai']).embeddings).toMatchObject({
      space: { provider: 'openai', model: 'text-embedding-3-small', dimensions: 1536, queryPrefix: '', documentPrefix: '' },
      url: 'https://api.openai.com/v1',
    });
    const env = {
      PG_WORKSPACE_EMBEDDINGS: 'ollama',
      PG_WORKSPACE_EMBEDDINGS_URL: 'http://gpu-box:11434',
      PG_WORKSPACE_EMBEDDINGS_MODEL: 'all-minilm',
      PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '16',
      PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '1',
      PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS: '5000',
      PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '0',
      PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS: '2000',
    };
    expect(serve([], env).embeddings).toMatchObject({ space: { model: 'all-minilm', dimensions: 384 }, url: 'http://gpu-box:11434/', batchSize: 16, concurrency: 1, timeoutMs: 5000, maxRetries: 0, maxInputChars: 2000 });
    const flagged = serve(
      ['--embeddings', 'openai', '--embeddings-url', 'http://127.0.0.1:1234/v1/', '--embeddings-model', 'my-model', '--embeddings-dimensions', '512',
        '--embeddings-query-prefix', 'query: ', '--embeddings-document-prefix', ''],
      env,
    ).embeddings;
    expect(flagged).toMatchObject({
      space: { provider: 'openai', model: 'my-model', dimensions: 512, queryPrefix: 'query: ', documentPrefix: '' },
      url: 'http://127.0.0.1:1234/v1',
      sendDimensions: true,
    });
  });

  it('takes the API key from the environment only, and never shows it', () => {
    const config = serve(['--embeddings', 'openai'], { PG_WORKSPACE_EMBEDDINGS_API_KEY: 'sk-secret-value-123' });
    expect(config.embeddings?.apiKey?.reveal()).toBe('sk-secret-value-123');
    expect(JSON.stringify(config)).not.toContain('sk-secret-value-123');
    expect(inspect(config, { depth: 10 })).not.toContain('sk-secret-value-123');
    expect(`${String(config.embeddings?.apiKey)}`).toBe('[redacted]');
    expect(failure(['--embeddings-api-key', 'sk-x'])).toMatch(/^Unknown option '--embeddings-api-key'/);
  });

  it('needs the dimensions of a model it does not know', () => {
    expect(failure(['--embeddings', 'openai', '--embeddings-model', 'BAAI/bge-small-en-v1.5'])).toBe(
      '--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: required for the model "BAAI/bge-small-en-v1.5" ' +
        '(how many numbers each of its vectors has, e.g. 768; its model card says).',
    );
    expect(serve(['--embeddings', 'ollama', '--embeddings-model', 'nomic-embed-text:latest']).embeddings?.space.dimensions).toBe(768);
  });

  it('names the setting in every refusal', () => {
    expect(failure(['--embeddings', 'cohere'])).toBe('--embeddings / PG_WORKSPACE_EMBEDDINGS: must be none, openai or ollama, got "cohere".');
    for (const bad of ['0', '2.5', 'many', '16001']) {
      expect(failure(['--embeddings', 'ollama', '--embeddings-dimensions', bad])).toBe(
        `--embeddings-dimensions / PG_WORKSPACE_EMBEDDINGS_DIMENSIONS: must be a whole number from 1 to 16000, got "${bad}".`,
      );
    }
    const ollama = { PG_WORKSPACE_EMBEDDINGS: 'ollama' };
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: '0' })).toBe('PG_WORKSPACE_EMBEDDINGS_BATCH_SIZE: must be a whole number from 1 to 2048, got "0".');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: '65' })).toContain('PG_WORKSPACE_EMBEDDINGS_CONCURRENCY: must be a whole number from 1 to 64');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS: '50' })).toContain('PG_WORKSPACE_EMBEDDINGS_TIMEOUT_MS: must be a whole number from 100 to 600000');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES: '-1' })).toContain('PG_WORKSPACE_EMBEDDINGS_MAX_RETRIES:');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS: '1e3' })).toContain('PG_WORKSPACE_EMBEDDINGS_MAX_INPUT_CHARS:');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_URL: 'ftp://host' })).toBe(
      '--embeddings-url / PG_WORKSPACE_EMBEDDINGS_URL: must be an http:// or https:// URL, got a ftp: URL.',
    );
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_URL: 'not a url' })).toContain('must be an http:// or https:// URL, e.g.');
    expect(failure([], { ...ollama, PG_WORKSPACE_EMBEDDINGS_URL: 'https://user:pw@host/v1' })).toBe(
      '--embeddings-url / PG_WORKSPACE_EMBEDDINGS_URL: must not carry a user name or password; put the API key in PG_WORKSPACE_EMBEDDINGS_API_KEY.',
    );
  });

  it('refuses provider settings without a provider, and the flags on commands that embed nothing', () => {
    expect(failure(['--embeddings-model', 'x'])).toBe('--embeddings-model configures an embedding provider: give --embeddings openai|ollama too (or PG_WORKSPACE_EMBEDDINGS).');
    expect(failure(['doctor', '--embeddings', 'ollama'])).toMatch(/^Unknown option '--embeddings'/);
  });
});

describe('reembed', () => {
  const ollama = { PG_WORKSPACE_EMBEDDINGS: 'ollama' };
  it('takes --project ID or --all, and the embedding settings to move to', () => {
    expect(parseCommand(['reembed', '--project', 'alpha'], ollama)).toMatchObject({
      kind: 'reembed',
      projectId: 'alpha',
      config: { embeddings: { space: { provider: 'ollama', model: 'nomic-embed-text' } } },
    });
    expect(parseCommand(['reembed', '--all', '--embeddings', 'openai', '--embeddings-dimensions', '768'], {})).toMatchObject({
      kind: 'reembed',
      projectId: undefined,
      config: { embeddings: { space: { provider: 'openai', dimensions: 768 }, sendDimensions: true } },
    });
  });

  it('refuses neither or both of --project and --all, a bad id, and no provider', () => {
    const oneOf = 'reembed takes --project ID (one workspace) or --all (every workspace), one of the two.';
    expect(failure(['reembed'], ollama)).toBe(oneOf);
    expect(failure(['reembed', '--all', '--project', 'a'], ollama)).toBe(oneOf);
    expect(failure(['reembed', '--project', 'Bad_Id'], ollama)).toContain('--project: "Bad_Id" is not a project id.');
    expect(failure(['reembed', '--all'])).toContain('reembed moves columns to the configured embedding space');
    expect(failure(['reembed', '--all', '--http', '8080'], ollama)).toMatch(/Unknown option '--http'/);
  });
});
