import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export class PathNotAllowedError extends Error {
  override name = 'PathNotAllowedError';
}

/**
 * Where index_directory may read. `client`: the directories the MCP client declared as roots
 * (undefined when it does not support roots); `server`: the --allow-root directories. A path
 * must lie inside one of the client's roots when the client declared any, and inside one of the
 * server's when it lists any; with neither, nothing is allowed. `clientElsewhere`: the client may
 * be on another machine (HTTP), so its roots, paths of its own disk, never allow anything alone.
 */
export interface AllowedRoots {
  client: readonly string[] | undefined;
  server: readonly string[];
  clientElsewhere: boolean;
}

/** Client roots are file:// URIs; other schemes name nothing on this disk and are ignored. */
export function rootPathsOf(uris: readonly string[]): string[] {
  return uris.flatMap((uri) => {
    try {
      return uri.startsWith('file:') ? [fileURLToPath(uri)] : [];
    } catch {
      return [];
    }
  });
}

/**
 * The real path of a directory an agent named, once it is known to be inside the allowed roots
 * (both compared after resolving symlinks, so a link inside a root cannot lead out of it).
 */
export async function resolveAllowedDirectory(requested: string, roots: AllowedRoots): Promise<string> {
  if (roots.client === undefined && roots.server.length === 0) {
    throw new PathNotAllowedError(
      'No directory may be indexed: this client declares no MCP roots and the server was started without --allow-root. ' +
        'Share the directory as a root in your client, or start the server with --allow-root DIR (PG_WORKSPACE_ALLOWED_ROOTS).',
    );
  }
  if (roots.clientElsewhere && roots.server.length === 0) {
    throw new PathNotAllowedError(
      'No directory may be indexed: over HTTP only the directories the server was started with (--allow-root DIR, PG_WORKSPACE_ALLOWED_ROOTS) ' +
        "may be, since a client's roots name directories of its own machine, not of the server's.",
    );
  }
  if (!path.isAbsolute(requested)) throw new PathNotAllowedError(`path must be absolute, got ${JSON.stringify(requested)}.`);
  let real: string;
  try {
    real = await realpath(requested);
  } catch (error) {
    throw new PathNotAllowedError(`Cannot read ${JSON.stringify(requested)}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`);
  }
  if (!(await stat(real)).isDirectory()) throw new PathNotAllowedError(`${JSON.stringify(requested)} is not a directory.`);
  const inside = async (list: readonly string[]) => {
    for (const root of list) {
      const resolved = await realpath(root).catch(() => undefined);
      if (resolved !== undefined && isInside(real, resolved)) return true;
    }
    return false;
  };
  if (roots.client !== undefined && !(await inside(roots.client))) {
    throw new PathNotAllowedError(
      `${JSON.stringify(requested)} is outside the roots this client shared (${roots.client.join(', ') || 'none'}): index a directory inside one of them, or share it as a root.`,
    );
  }
  if (roots.server.length > 0 && !(await inside(roots.server))) {
    throw new PathNotAllowedError(`${JSON.stringify(requested)} is outside the directories this server allows (--allow-root: ${roots.server.join(', ')}).`);
  }
  return real;
}

export function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}
