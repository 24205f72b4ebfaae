/** Timing helpers: every figure is a distribution of wall-clock samples, never one run. */

export interface Distribution {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export function distribution(samples: readonly number[]): Distribution {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    n: sorted.length,
    p50: round(at(0.5)),
    p95: round(at(0.95)),
    p99: round(at(0.99)),
    mean: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)),
  };
}

/** Runs `fn` `warmup` times unmeasured, then `iterations` times, returning milliseconds. */
export async function sample(iterations: number, fn: (i: number) => Promise<unknown>, warmup = 3): Promise<Distribution> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const started = performance.now();
    await fn(i);
    samples.push(performance.now() - started);
  }
  return distribution(samples);
}

export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100;
}

/**
 * Samples several contenders round-robin, so drift in the machine's state (caches warming, a
 * neighbour's load) lands on all of them alike instead of on whichever ran first.
 */
export async function sampleInterleaved<K extends string>(
  iterations: number,
  contenders: Record<K, (i: number) => Promise<unknown>>,
  warmup = 5,
): Promise<Record<K, Distribution>> {
  const names = Object.keys(contenders) as K[];
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = -warmup; i < iterations; i++) {
    for (const name of names) {
      const started = performance.now();
      await contenders[name](i);
      if (i >= 0) samples[name].push(performance.now() - started);
    }
  }
  return Object.fromEntries(names.map((n) => [n, distribution(samples[n])])) as Record<K, Distribution>;
}
