import { pgError } from '../sql-errors.js';

/**
 * An embedded store PostgreSQL cannot read. PGlite reports most such damage (a truncated
 * pg_control, catalog or WAL segment) by aborting its WebAssembly instance with a bare
 * `Aborted()`, after which that instance answers nothing: the message says which directory is
 * damaged and what to do instead.
 */
export class DamagedStoreError extends Error {
  override name = 'DamagedStoreError';

  constructor(dataDir: string, cause: unknown) {
    const message = (cause instanceof Error ? cause.message : String(cause)).trim();
    // PGlite's own words for an abort ("Build with -sASSERTIONS ...") only help its developers.
    const reason = message.startsWith('Aborted(') ? 'PGlite aborted while reading it' : message;
    super(
      `The embedded data directory ${dataDir} is damaged: PostgreSQL cannot read it (${reason}). ` +
        `Restore it from a backup, or move it aside and start fresh, keeping the old one: stop this server, ` +
        `run \`mv ${dataDir} ${dataDir}.damaged\`, then start it again (it makes a new, empty store there; ` +
        `the workspaces of the old store are not in it).`,
      { cause },
    );
  }
}

/**
 * Errors that mean the store's files are damaged: PGlite's abort (a WebAssembly RuntimeError,
 * or its own failed start), and PostgreSQL's data-corruption and missing-file errors.
 */
export function isStoreDamage(error: unknown): boolean {
  const code = pgError(error)?.code;
  if (code) return code === 'XX001' || code === 'XX002' || code === '58P01';
  const message = error instanceof Error ? error.message : String(error);
  return (error instanceof Error && error.name === 'RuntimeError') || /^Aborted\(|PGlite failed to initialize/.test(message);
}
