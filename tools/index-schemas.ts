import * as z from 'zod';

const count = z.number().int();

/** One index_directory run, as index_directory and index_status return it. */
export const indexRun = z.object({
  job_id: z.string(),
  project_id: z.string(),
  path: z.string().describe('the real path of the directory (the repository of its chunks)'),
  state: z.enum(['running', 'done', 'failed', 'cancelled']),
  phase: z.enum(['queued', 'walking', 'indexing', 'removing', 'finished']),
  files_total: count.describe('files to index (after .gitignore, include/exclude, binaries and oversized files)'),
  files_done: count,
  files_changed: count.describe('new or changed files written'),
  files_unchanged: count.describe('files whose content hash was stored already'),
  files_removed: count.describe('files gone from the directory, removed with their chunks'),
  chunks_added: count,
  chunks_removed: count,
  embedded: count.describe('chunks sent to the embedding provider'),
  skipped: z.object({
    binary: z.array(z.string()),
    oversized: z.array(z.string()),
    outside_root: z.array(z.string()).describe('symlinks leading out of the directory, not followed'),
    unreadable: z.array(z.string()),
  }),
  error: z.string().nullable(),
  started_at: z.string(),
  finished_at: z.string().nullable(),
});
