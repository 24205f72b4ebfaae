import { describe, expect, it } from 'vitest';
import { hasRoom, isDirect, isOutOfSlots, slotWaits } from '../../src/db/postgres/connection-room.js';

describe('connection room', () => {
  it('keeps a warm connection while 2 slots, or a tenth of them, stay free besides it', () => {
    expect(hasRoom({ slots: 10, free: 2 })).toBe(true);
    expect(hasRoom({ slots: 10, free: 1 })).toBe(false);
    expect(hasRoom({ slots: 300, free: 30 })).toBe(true);
    expect(hasRoom({ slots: 300, free: 29 })).toBe(false);
  });

  it('tells a direct connection from one through a pooler by the port PostgreSQL sees', () => {
    expect(isDirect(51234, 51234)).toBe(true);
    // A unix socket has no port at either end.
    expect(isDirect(null, undefined)).toBe(true);
    expect(isDirect(40022, 51234)).toBe(false);
    // A pooler reaching PostgreSQL over its unix socket, reached over TCP.
    expect(isDirect(null, 51234)).toBe(false);
    expect(isDirect(51234, undefined)).toBe(false);
  });

  it("knows PostgreSQL's and PgBouncer's refusals for want of a slot, and nothing else", () => {
    expect(isOutOfSlots({ code: '53300', message: 'sorry, too many clients already' })).toBe(true);
    expect(isOutOfSlots({ code: '08P01', message: 'query_wait_timeout' })).toBe(true);
    expect(isOutOfSlots({ code: '08P01', message: 'no more connections allowed (max_client_conn)' })).toBe(true);
    expect(isOutOfSlots({ code: '08P01', message: 'server login has been failing, try again later (server_login_retry)' })).toBe(false);
    expect(isOutOfSlots({ code: '57P01', message: 'terminating connection due to administrator command' })).toBe(false);
    expect(isOutOfSlots(new Error('sorry, too many clients already'))).toBe(false);
  });

  it('waits in doubling, jittered pauses and stops at its bound', async () => {
    const started = Date.now();
    let pauses = 0;
    for await (const attempt of slotWaits(400, () => 0.5)) pauses = attempt;
    const took = Date.now() - started;
    // 50, 100, 200 ms, then the 50 left: four pauses at most (fewer when timers run late), the bound kept.
    expect(pauses).toBeGreaterThanOrEqual(2);
    expect(pauses).toBeLessThanOrEqual(4);
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(5_000);
  });
});
