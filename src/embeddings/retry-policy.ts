/** When to try a provider request again, and how long to wait first. */

/** A provider that asks for a longer wait than this is not waited for: the call fails and says when to retry. */
export const MAX_RETRY_AFTER_MS = 30_000;
const MAX_BACKOFF_MS = 8_000;

/** Rate limits, the server's transient failures and request timeouts (408); any other answer stays as it is. */
export function isRetriedStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/**
 * Exponential backoff with jitter: attempt 1 waits about `baseMs`, each further attempt twice as
 * long up to 8 s, each a random half to whole of that, so clients that failed together do not
 * come back together.
 */
export function backoffMs(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** `Retry-After` as milliseconds from `now`: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // An HTTP date names its month; Date.parse alone would read "-3" as a year.
  const date = /[a-z]{3}/i.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
