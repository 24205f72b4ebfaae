import * as z from 'zod';
import type { SnapshotInfo } from '../src/workspaces/workspace-manager.js';
import { isoTimestamp } from './schemas.js';

/** A snapshot's number within its workspace, as list_snapshots shows it. */
export const snapshotNumber = z.number().int().min(1).max(2_147_483_647).describe('the snapshot number, as list_snapshots shows it');

export const snapshotSummary = z.object({
  snapshot: z.number().int(),
  label: z.string().nullable(),
  created_at: isoTimestamp,
  size_bytes: z.number().describe('bytes its tables, indexes and sequences take'),
  origin: z.enum(['snapshot', 'restore']).describe('snapshot: taken by snapshot_workspace; restore: the state a restore replaced'),
  migration_level_current: z.boolean().describe('false: taken before a workspace migration this server has; restoring it upgrades it on next use'),
});

export function summarize(row: SnapshotInfo): z.infer<typeof snapshotSummary> {
  return {
    snapshot: row.snapshot,
    label: row.label,
    created_at: row.created_at.toISOString(),
    size_bytes: row.size_bytes,
    origin: row.origin,
    migration_level_current: row.levelCurrent,
  };
}
