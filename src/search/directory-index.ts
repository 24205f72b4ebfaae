import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../logger.js';
import { validateProjectId } from '../workspaces/project-id.js';
import { resolveAllowedDirectory, type AllowedRoots } from './allowed-roots.js';
import { chunkText, contentHash, DEFAULT_CHUNK_OPTIONS } from './chunking.js';
import { removeFiles, storeFiles, type ChunkEmbeddings, type ChunkLoads, type PreparedFile, type Repository, type WorkspaceWriter } from './chunk-store.js';
import { REPOSITORY_FILES } from './ingest-sql.js';
import { readWalkedFile, walkDirectory, type WalkedFile, type WalkResult } from './directory-walk.js';
import type { ReadBudget } from './read-budget.js';
import { FairLimit } from '../fair-limit.js';

export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
/** Files written per batch: their chunks go to the provider in one call, each file in its own statement. */
const FILES_PER_BATCH = 32;
const CHUNKS_PER_BATCH = 256;
const STORED_PAGE = 5000;
const REMOVED_PER_STATEMENT = 500;
/** Finished jobs kept for index_status, per server. */
const FINISHED_JOBS_KEPT = 50;
/**
 * Runs of a server at once, and of one workspace; the others wait their turn (`phase: queued`),
 * the workspace with the fewest running first. A run holds its walk's list of files until it
 * ends, and nothing bounded how many ran: an agent could start one per subdirectory (or one per
 * workspace on the same directory), and other workspaces' runs went on beside all of them.
 */
const RUNS_AT_ONCE = 4;
const RUNS_PER_WORKSPACE = 2;

export interface IndexDirectoryInput {
  projectId: string;
  path: string;
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  maxFileBytes?: number | undefined;
}

export interface IndexJobStatus {
  job_id: string;
  project_id: string;
  path: string;
  state: 'running' | 'done' | 'failed' | 'cancelled';
  phase: 'queued' | 'walking' | 'indexing' | 'removing' | 'finished';
  files_total: number;
  files_done: number;
  files_changed: number;
  files_unchanged: number;
  files_removed: number;
  chunks_added: number;
  chunks_removed: number;
  embedded: number;
  skipped: { binary: string[]; oversized: string[]; outside_root: string[]; unreadable: string[] };
  error: string | null;
  started_at: string;
  finished_at: string | null;
}

/** Where a file the read skipped is listed (the walk's names are camelCase, the tool's snake_case). */
const SKIPPED_AS: Readonly<Record<keyof WalkResult['skipped'], keyof IndexJobStatus['skipped']>> = {
  binary: 'binary',
  oversized: 'oversized',
  outsideRoot: 'outside_root',
  unreadable: 'unreadable',
};

export type ProgressListener = (status: IndexJobStatus) => void;

interface Job {
  status: IndexJobStatus;
  done: Promise<IndexJobStatus>;
  abort: AbortController;
  listeners: Set<ProgressListener>;
}

const LANGUAGES: Readonly<Record<string, string>> = {
  '.ts': 'typescript', '.tsx': 'typescript', '.mts': 'typescript', '.cts': 'typescript',
  '.js': 'javascript', '.jsx': 'javascript', '.mjs': 'javascript', '.cjs': 'javascript',
  '.py': 'python', '.rb': 'ruby', '.go': 'go', '.rs': 'rust', '.java': 'java', '.kt': 'kotlin',
  '.c': 'c', '.h': 'c', '.cc': 'cpp', '.cpp': 'cpp', '.hpp': 'cpp', '.cs': 'csharp', '.php': 'php',
  '.swift': 'swift', '.scala': 'scala', '.sql': 'sql', '.sh': 'shell', '.md': 'markdown',
  '.json': 'json', '.yaml': 'yaml', '.yml': 'yaml', '.toml': 'toml', '.html': 'html', '.css': 'css',
};

/**
 * index_directory's runs: each in the background, one at a time per workspace and directory.
 * A run compares every file's content hash with the one stored: only new and changed files are
 * chunked, embedded and written (each file in one statement, so it is replaced whole or not at
 * all), and files gone from the directory are removed once the walk is complete. A run stopped
 * half-way (a restart) leaves the files it finished stored; the next run skips them and goes on.
 */
export class DirectoryIndexer {
  readonly #jobs = new Map<string, Job>();
  readonly #runs = new FairLimit(RUNS_AT_ONCE, RUNS_PER_WORKSPACE);

  constructor(
    private readonly sandbox: WorkspaceWriter,
    private readonly embeddings: ChunkEmbeddings | undefined,
    private readonly log: Logger,
    /** Defers the chunks table's vector indexes over a run that loads as many chunks as it holds. */
    private readonly loads: ChunkLoads | undefined,
    /** The file text every run of this server holds at once. */
    private readonly budget: ReadBudget,
  ) {}

  /** Starts a run (or joins the one already running for that directory) and returns its status. */
  async start(input: IndexDirectoryInput, roots: AllowedRoots, listener?: ProgressListener): Promise<{ status: IndexJobStatus; done: Promise<IndexJobStatus> }> {
    const projectId = validateProjectId(input.projectId);
    const root = await resolveAllowedDirectory(input.path, roots);
    const running = [...this.#jobs.values()].find((j) => j.status.state === 'running' && j.status.project_id === projectId && j.status.path === root);
    if (running) {
      if (listener) running.listeners.add(listener);
      return { status: { ...running.status }, done: running.done };
    }
    const status: IndexJobStatus = {
      job_id: randomUUID(),
      project_id: projectId,
      path: root,
      state: 'running',
      phase: 'queued',
      files_total: 0,
      files_done: 0,
      files_changed: 0,
      files_unchanged: 0,
      files_removed: 0,
      chunks_added: 0,
      chunks_removed: 0,
      embedded: 0,
      skipped: { binary: [], oversized: [], outside_root: [], unreadable: [] },
      error: null,
      started_at: new Date().toISOString(),
      finished_at: null,
    };
    const job: Job = { status, abort: new AbortController(), listeners: new Set(listener ? [listener] : []), done: Promise.resolve(status) };
    // Finished within its turn: the next run starts once this one reads as finished.
    job.done = this.#runs.run({ workspace: projectId }, () =>
      this.#run(job, input).then(
        () => this.#finish(job, 'done', null),
        (error: unknown) => this.#finish(job, job.abort.signal.aborted ? 'cancelled' : 'failed', (error as Error).message ?? String(error)),
      ),
    );
    this.#jobs.set(status.job_id, job);
    this.#forgetOldJobs();
    return { status: { ...status }, done: job.done };
  }

  /** Runs of a workspace, newest first; with a job id, that one. */
  status(projectId: string, jobId?: string): IndexJobStatus[] {
    return [...this.#jobs.values()]
      .map((j) => j.status)
      .filter((s) => s.project_id === projectId && (jobId === undefined || s.job_id === jobId))
      .reverse()
      .map((s) => ({ ...s }));
  }

  /** Stops every run (server shutdown): each stops between files, leaving whole files only. */
  async close(): Promise<void> {
    const running = [...this.#jobs.values()].filter((j) => j.status.state === 'running');
    for (const job of running) job.abort.abort();
    await Promise.all(running.map((j) => j.done));
  }

  async #run(job: Job, input: IndexDirectoryInput): Promise<void> {
    const { status } = job;
    const signal = job.abort.signal;
    signal.throwIfAborted();
    status.phase = 'walking';
    this.#report(job);
    const repository: Repository = { path: status.path, name: path.basename(status.path) };
    const maxFileBytes = input.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    const walked = await walkDirectory(status.path, { include: input.include ?? [], exclude: input.exclude ?? [], maxFileBytes }, signal);
    status.skipped = {
      binary: walked.skipped.binary,
      oversized: walked.skipped.oversized,
      outside_root: walked.skipped.outsideRoot,
      unreadable: walked.skipped.unreadable,
    };
    status.files_total = walked.files.length;
    status.phase = 'indexing';
    this.#report(job);

    const stored = new Map<string, string>();
    for (let offset = 0; ; offset += STORED_PAGE) {
      const { rows } = await this.sandbox.readAsWorkspace(status.project_id, REPOSITORY_FILES, [repository.path, offset, STORED_PAGE], Math.min(STORED_PAGE, this.sandbox.maxRowsCap));
      for (const [file, hash] of rows) stored.set(file as string, hash as string);
      if (rows.length < Math.min(STORED_PAGE, this.sandbox.maxRowsCap)) break;
    }

    // The run's load, estimated before reading: new files' bytes in chunks (changed files replace chunks they had).
    const incoming = walked.files.reduce((n, f) => n + (stored.has(f.path) ? 0 : Math.ceil(f.sizeBytes / DEFAULT_CHUNK_OPTIONS.size)), 0);
    const load = await this.loads?.begin(status.project_id, incoming);
    try {
      await this.#index(job, walked.files, stored, repository, maxFileBytes);
    } finally {
      await load?.end();
    }

    // Only after a complete walk: a run stopped earlier must not take files it did not reach for deleted.
    status.phase = 'removing';
    const present = new Set(walked.files.map((f) => f.path));
    const gone = [...stored.keys()].filter((p) => !present.has(p));
    for (let at = 0; at < gone.length; at += REMOVED_PER_STATEMENT) {
      signal.throwIfAborted();
      status.files_removed += await removeFiles(this.sandbox, status.project_id, repository, gone.slice(at, at + REMOVED_PER_STATEMENT));
    }
  }

  /** Chunks, embeds and writes the new and changed files, in batches. */
  async #index(job: Job, files: readonly WalkedFile[], stored: ReadonlyMap<string, string>, repository: Repository, maxFileBytes: number): Promise<void> {
    const { status } = job;
    const signal = job.abort.signal;
    let batch: PreparedFile[] = [];
    let batchChunks = 0;
    // Bytes of the budget this run holds: the batch's files, and the one being read.
    let held = 0;
    const giveBack = (bytes: number) => {
      held -= bytes;
      this.budget.give(bytes);
    };
    const flush = async () => {
      if (batch.length === 0) return;
      const outcomes = await storeFiles(this.sandbox, this.embeddings, status.project_id, repository, batch, signal);
      for (const o of outcomes) {
        status.chunks_added += o.added;
        status.chunks_removed += o.removed;
        status.embedded += o.embedded;
      }
      status.files_done += batch.length;
      batch = [];
      batchChunks = 0;
      giveBack(held);
      this.#report(job);
    };
    try {
      for (const file of files) {
        signal.throwIfAborted();
        let share = this.budget.tryTake(file.sizeBytes);
        if (share === undefined) {
          // Wait holding nothing: written first, the batch's bytes are free for the runs ahead.
          await flush();
          share = await this.budget.take(file.sizeBytes, signal);
        }
        held += share;
        const read = await readWalkedFile(file.absolute, status.path, maxFileBytes);
        if ('skipped' in read) {
          giveBack(share);
          status.skipped[SKIPPED_AS[read.skipped]].push(file.path);
          status.files_done++;
          continue;
        }
        const grown = read.bytes - share;
        if (grown > 0) {
          this.budget.force(grown);
          held += grown;
        }
        const { text } = read;
        const hash = contentHash(text);
        if (stored.get(file.path) === hash) {
          giveBack(share + Math.max(grown, 0));
          status.files_unchanged++;
          status.files_done++;
          continue;
        }
        status.files_changed++;
        const chunks = chunkText(text, DEFAULT_CHUNK_OPTIONS, 'code');
        batch.push({ path: file.path, hash, sizeBytes: file.sizeBytes, language: LANGUAGES[path.extname(file.path).toLowerCase()] ?? null, metadata: null, chunks });
        batchChunks += chunks.length;
        if (batch.length >= FILES_PER_BATCH || batchChunks >= CHUNKS_PER_BATCH) await flush();
      }
      await flush();
    } finally {
      giveBack(held);
    }
  }

  #finish(job: Job, state: IndexJobStatus['state'], error: string | null): IndexJobStatus {
    Object.assign(job.status, { state, error, phase: 'finished', finished_at: new Date().toISOString() });
    if (error) this.log.warn('index_directory run ended early', { project_id: job.status.project_id, path: job.status.path, state, error });
    this.#report(job);
    job.listeners.clear();
    return { ...job.status };
  }

  #report(job: Job): void {
    for (const listener of job.listeners) {
      try {
        listener({ ...job.status });
      } catch {
        job.listeners.delete(listener);
      }
    }
  }

  #forgetOldJobs(): void {
    const finished = [...this.#jobs.values()].filter((j) => j.status.state !== 'running');
    for (const job of finished.slice(0, Math.max(0, finished.length - FINISHED_JOBS_KEPT))) this.#jobs.delete(job.status.job_id);
  }
}
