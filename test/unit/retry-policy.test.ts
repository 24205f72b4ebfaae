import { describe, expect, it } from 'vitest';
import { backoffMs, isRetriedStatus, retryAfterMs } from '../../src/embeddings/retry-policy.js';

describe('embedding retry policy', () => {
  it('retries rate limits, timeouts and server errors only', () => {
    expect([408, 425, 429, 500, 502, 503, 504, 599].every(isRetriedStatus)).toBe(true);
    expect([400, 401, 403, 404, 413, 422].some(isRetriedStatus)).toBe(false);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-12-07T08:00:00Z');
    expect(retryAfterMs('7', now)).toBe(7000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
    expect(retryAfterMs('Mon, 07 Dec 2026 08:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('Mon, 07 Dec 2026 07:59:00 GMT', now)).toBe(0);
    expect(retryAfterMs(null, now)).toBeUndefined();
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs('-3', now)).toBeUndefined();
  });

  it('backs off exponentially, jittered between half and all of each step, up to 8 s', () => {
    expect([1, 2, 3, 4].map((attempt) => backoffMs(attempt, 500, () => 0))).toEqual([250, 500, 1000, 2000]);
    expect([1, 2, 3, 4].map((attempt) => backoffMs(attempt, 500, () => 1))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffMs(20, 500, () => 1)).toBe(8000);
    expect(backoffMs(20, 500, () => 0)).toBe(4000);
  });
});
