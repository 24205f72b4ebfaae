import { constants, open, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { isInside } from './allowed-roots.js';

export interface WalkedFile {
  /** Relative to the root, with forward slashes. */
  path: string;
  absolute: string;
  sizeBytes: number;
}

export interface WalkOptions {
  /** gitignore-style patterns to index only (empty: everything not excluded). */
  include: readonly string[];
  /** gitignore-style patterns to leave out, besides .gitignore files and .git. */
  exclude: readonly string[];
  maxFileBytes: number;
}

export interface WalkResult {
  files: WalkedFile[];
  skipped: { binary: string[]; oversized: string[]; outsideRoot: string[]; unreadable: string[] };
}

/**
 * `ignore` matches with regular expressions, and each `**` between slashes becomes a group the
 * engine backtracks over: a path d directories deep costs up to about d^(k+1) steps per pattern
 * with k of them, on the server's one thread (measured, 1-10 ns a step: a pattern with seven
 * such `**`, each followed by `a`, took 74 s against a path 56 directories named `a` deep; one
 * with a single `**` 9.4 s at 2,000 deep). A path whose patterns would cost more than this stops
 * the walk; ordinary patterns (one `**` at 20 deep: 400 steps) are far below.
 */
const MAX_MATCH_STEPS = 10_000_000;

/** A .gitignore beyond this is not one (and not read). */
const MAX_GITIGNORE_BYTES = 1024 * 1024;

/** Bytes read to tell a binary file: Git's own heuristic looks for a NUL in the first 8000. */
const BINARY_PROBE_BYTES = 8000;

/**
 * The files of a directory that index_directory reads: .gitignore files honoured at every
 * level (patterns relative to their own directory, as Git does), `.git` left out, `exclude`
 * left out and, when given, only `include` kept. A symlink is followed only when its target
 * lies inside the root (then the target is read once, under the link's path); one leading out
 * is refused and listed. Binary and oversized files are listed, not read.
 */
export async function walkDirectory(root: string, options: WalkOptions, signal?: AbortSignal): Promise<WalkResult> {
  const result: WalkResult = { files: [], skipped: { binary: [], oversized: [], outsideRoot: [], unreadable: [] } };
  const excluded = ignore().add(['.git/', ...options.exclude]);
  const included = options.include.length > 0 ? ignore().add([...options.include]) : undefined;
  const visited = new Set<string>();
  const argumentStars = starGroups([...options.exclude, ...options.include]);

  /** Refuses to match `absolute` when the patterns would backtrack past MAX_MATCH_STEPS. */
  const checkCost = (absolute: string, relative: string, rules: readonly Rules[]) => {
    let steps = matchSteps(relative, argumentStars);
    for (const r of rules) steps += matchSteps(path.relative(r.base, absolute), r.stars);
    if (steps > MAX_MATCH_STEPS) {
      throw new Error(
        `stopped at ${relative}: its .gitignore, include or exclude patterns with several ** between slashes would take too long to match ` +
          `a path ${relative.split('/').length} directories deep (about ${steps.toExponential(1)} steps of a regular expression). Simplify those patterns.`,
      );
    }
  };

  async function visit(directory: string, rules: readonly Rules[]): Promise<void> {
    signal?.throwIfAborted();
    const real = await realpath(directory);
    // A directory swapped for a link out since its parent was read.
    if (!isInside(real, root)) {
      result.skipped.outsideRoot.push(path.relative(root, directory).split(path.sep).join('/'));
      return;
    }
    if (visited.has(real)) return;
    visited.add(real);
    // Read as any file is (below): a FIFO held the walk forever, a link to /dev/zero filled memory.
    const ignoreFile = await readWalkedFile(path.join(directory, '.gitignore'), root, MAX_GITIGNORE_BYTES);
    const own = 'text' in ignoreFile ? ignoreFile.text : undefined;
    const here = own === undefined ? rules : [...rules, { base: directory, matcher: ignore().add(own), stars: starGroups(own.split(/\r?\n/)) }];
    const entries = await readdir(directory, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const absolute = path.join(directory, entry.name);
      const relative = path.relative(root, absolute).split(path.sep).join('/');
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await realpath(absolute).catch(() => undefined);
        if (target === undefined) {
          result.skipped.unreadable.push(relative);
          continue;
        }
        if (!isInside(target, root)) {
          result.skipped.outsideRoot.push(relative);
          continue;
        }
        const targetStat = await stat(target);
        isDirectory = targetStat.isDirectory();
        isFile = targetStat.isFile();
      }
      if (!isDirectory && !isFile) continue;
      checkCost(absolute, relative, here);
      const probe = isDirectory ? `${relative}/` : relative;
      if (excluded.ignores(probe) || here.some((r) => r.matcher.ignores(relativeTo(r.base, absolute, isDirectory)))) continue;
      if (isDirectory) {
        await visit(absolute, here);
        continue;
      }
      if (included && !included.ignores(relative)) continue;
      const { size } = await stat(absolute);
      if (size > options.maxFileBytes) {
        result.skipped.oversized.push(relative);
        continue;
      }
      if (await looksBinary(absolute)) {
        result.skipped.binary.push(relative);
        continue;
      }
      result.files.push({ path: relative, absolute, sizeBytes: size });
    }
  }
  await visit(root, []);
  return result;
}

interface Rules {
  base: string;
  matcher: Ignore;
  /** Per pattern with any, its `**` between slashes. */
  stars: number[];
}

/** Per pattern that has any, how many `**` it has between slashes (or after a leading one). */
function starGroups(patterns: readonly string[]): number[] {
  return patterns.map((p) => (p.match(/(?<=\/)\*\*(?=\/)/g) ?? []).length).filter((k) => k > 0);
}

/** The backtracking steps, at most, of matching a path (relative, with `/` or the platform's separator) against patterns with `stars`. */
function matchSteps(relative: string, stars: readonly number[]): number {
  const depth = relative.split(/[\\/]/).length;
  return stars.reduce((sum, k) => sum + depth ** (k + 1), 0);
}

function relativeTo(base: string, absolute: string, isDirectory: boolean): string {
  const relative = path.relative(base, absolute).split(path.sep).join('/');
  return isDirectory ? `${relative}/` : relative;
}

async function looksBinary(file: string): Promise<boolean> {
  const handle = await openWithoutWaiting(file);
  try {
    if (!(await handle.stat()).isFile()) return false;
    const buffer = Buffer.alloc(BINARY_PROBE_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, BINARY_PROBE_BYTES, 0);
    return isBinary(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

function isBinary(start: Buffer): boolean {
  return start.subarray(0, BINARY_PROBE_BYTES).includes(0);
}

/** O_NONBLOCK: opening a FIFO with no writer returns at once instead of holding a thread of libuv's pool until one comes. */
function openWithoutWaiting(file: string): Promise<FileHandle> {
  return open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
}

export type ReadOutcome = { text: string; bytes: number } | { skipped: keyof WalkResult['skipped'] };

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * A walked file's text, read through one handle that is checked to be what the walk allowed: a
 * regular file (not a FIFO or device), the same inode as the real path its name resolves to now,
 * that path inside `root`, and at most `maxFileBytes` as read (not as stat said). The walk's own
 * checks are by name and the reading comes later (after other files' embeddings): a file the
 * agent replaced meanwhile by a link out of the root (its text stored and then read back through
 * `query`), a FIFO (the read waited forever) or /dev/zero (read until memory ran out) is skipped
 * and listed. A hard link is a file like another: one inside the root is read, wherever else it
 * also appears.
 */
export async function readWalkedFile(absolute: string, root: string, maxFileBytes: number): Promise<ReadOutcome> {
  let handle: FileHandle;
  try {
    handle = await openWithoutWaiting(absolute);
  } catch {
    return { skipped: 'unreadable' };
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) return { skipped: 'unreadable' };
    const real = await realpath(absolute).catch(() => undefined);
    if (real === undefined) return { skipped: 'unreadable' };
    if (!isInside(real, root)) return { skipped: 'outsideRoot' };
    const there = await stat(real).catch(() => undefined);
    // Changed again between the open and the look at its path: what was opened cannot be told.
    if (there?.dev !== opened.dev || there.ino !== opened.ino) return { skipped: 'unreadable' };
    if (opened.size > maxFileBytes) return { skipped: 'oversized' };
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead, buffer } = await handle.read(Buffer.alloc(READ_CHUNK_BYTES), 0, READ_CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxFileBytes) return { skipped: 'oversized' };
      parts.push(buffer.subarray(0, bytesRead));
    }
    const bytes = Buffer.concat(parts, total);
    if (isBinary(bytes)) return { skipped: 'binary' };
    return { text: bytes.toString('utf8'), bytes: total };
  } catch {
    return { skipped: 'unreadable' };
  } finally {
    await handle.close();
  }
}
