import { describe, expect, it } from 'vitest';
import { Mutex } from '../../src/db/mutex.js';

describe('Mutex: the turns on the embedded session, and when nobody wants it', () => {
  it('counts turns running or waiting, says when the last one ends, and is idle only then', async () => {
    const mutex = new Mutex();
    const freed: number[] = [];
    mutex.onFree(() => freed.push(mutex.pending));
    let release!: () => void;
    const first = mutex.run(() => new Promise<void>((resolve) => (release = resolve)));
    const second = mutex.run(async () => 'second');
    expect(mutex.pending).toBe(2);
    expect(mutex.turns).toBe(2);
    expect(mutex.idleFor()).toBe(0);
    await Promise.resolve();
    release();
    await first;
    expect(freed).toEqual([]);
    expect(await second).toBe('second');
    expect(freed).toEqual([0]);
    expect(mutex.pending).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(mutex.idleFor()).toBeGreaterThanOrEqual(15);
  });

  it('a failing turn ends like any other: the next one runs and the count goes down', async () => {
    const mutex = new Mutex();
    await expect(mutex.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(mutex.pending).toBe(0);
    expect(await mutex.run(async () => 1)).toBe(1);
    expect(mutex.turns).toBe(2);
  });
});
