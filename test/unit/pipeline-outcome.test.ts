import { describe, expect, it } from 'vitest';
import { completeOutcome, IncompletePipelineError, PipelineCollector } from '../../src/db/pipeline.js';
import type { PipelineStep } from '../../src/db/database.js';

const steps: PipelineStep[] = [{ sql: 'SELECT 1' }, { describePortal: 'p' }, { sql: 'SELECT 2' }];

describe('completeOutcome', () => {
  it('passes an answer with a result for every step, and a failed one as it is', () => {
    const collector = new PipelineCollector(steps);
    collector.on({ name: 'dataRow', fields: ['1'] } as const);
    collector.on({ name: 'commandComplete' });
    collector.on({ name: 'rowDescription', fields: [{ name: 'a', dataTypeID: 23, dataTypeModifier: -1 }] } as const);
    collector.on({ name: 'dataRow', fields: ['2'] } as const);
    collector.on({ name: 'commandComplete' });
    expect(completeOutcome(collector.outcome, steps).results).toHaveLength(3);
    const failed = { results: [], error: new Error('boom') };
    expect(completeOutcome(failed, steps)).toBe(failed);
  });

  it('refuses an answer that lost steps without an error (it was an empty result before)', () => {
    expect(() => completeOutcome({ results: [] }, steps)).toThrow(IncompletePipelineError);
    expect(() => completeOutcome({ results: [{ rows: [], fields: [] }] }, steps)).toThrow(/answered 1 of the 3 steps .* Retry the call/);
  });
});
