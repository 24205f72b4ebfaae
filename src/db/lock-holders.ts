import type { LockHolder } from './database.js';

/** Who holds a lock, for the message of a caller that gave up waiting for it. */
export function describeHolders(holders: readonly LockHolder[]): string {
  if (holders.length === 0) return 'a session that has just released it';
  return holders
    .map((h) => `pid ${h.pid} (${h.application_name || 'no application_name'}${h.client_addr ? ` from ${h.client_addr}` : ''}, for ${h.held_seconds ?? '?'} s)`)
    .join(', ');
}
