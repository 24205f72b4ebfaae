import { describe, expect, it } from 'vitest';
import { CROWDED_DATABASE_WORKSPACES, spreadingAdvice } from '../../src/operations/spreading-advice.js';

describe('doctor\'s advice to spread workspaces over databases', () => {
  const crowded = { workspaces: CROWDED_DATABASE_WORKSPACES, spreadable: true, spreading: false };

  it('is given from the measured knee on, naming the setting and the count', () => {
    expect(spreadingAdvice({ ...crowded, workspaces: CROWDED_DATABASE_WORKSPACES - 1 })).toBeUndefined();
    const advice = spreadingAdvice(crowded);
    expect(advice?.message).toContain(`holds ${CROWDED_DATABASE_WORKSPACES} workspaces`);
    expect(advice?.fix).toMatch(/--workspaces-per-database 50 \(PG_WORKSPACE_WORKSPACES_PER_DATABASE\)/);
  });

  it('is not given where spreading is impossible (embedded store, Citus, a member database) or already on', () => {
    expect(spreadingAdvice({ ...crowded, spreadable: false })).toBeUndefined();
    expect(spreadingAdvice({ ...crowded, spreading: true })).toBeUndefined();
  });
});
