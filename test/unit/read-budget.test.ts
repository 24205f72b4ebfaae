import { describe, expect, it } from 'vitest';
import { ReadBudget } from '../../src/search/read-budget.js';

describe('ReadBudget', () => {
  it('hands out bytes in the order asked, a file larger than the whole budget alone, and forgets a waiter whose run stops', async () => {
    const budget = new ReadBudget(100);
    expect(budget.tryTake(60)).toBe(60);
    const granted: string[] = [];
    const stop = new AbortController();
    const big = budget.take(500, stop.signal).then((n) => granted.push(`big ${n}`));
    const small = budget.take(10).then((n) => granted.push(`small ${n}`));
    // The small one fits now, but waits behind the big one: the big one is not starved.
    expect(budget.tryTake(10)).toBeUndefined();
    await Promise.resolve();
    expect(granted).toEqual([]);
    stop.abort(new Error('run stopped'));
    await expect(big).rejects.toThrow('run stopped');
    await small;
    expect(granted).toEqual(['small 10']);
    budget.give(70);
    expect(budget.tryTake(500)).toBe(100);
    budget.force(30);
    // Forced past the capacity (a file grown since the walk): nothing more until it is given back.
    const after = budget.take(1).then(() => granted.push('after'));
    budget.give(30);
    await Promise.resolve();
    expect(granted).toEqual(['small 10']);
    budget.give(100);
    await after;
    expect(granted).toEqual(['small 10', 'after']);
  });
});
