import { describe, expect, it } from 'vitest';
import { maintenanceSql, parseMaintenance } from '../../src/sandbox/maintenance-statement.js';

describe('parseMaintenance: VACUUM and ANALYZE as execute takes them', () => {
  it('keeps the options and columns, and quotes every name it puts back', async () => {
    const vacuum = await parseMaintenance(`VACUUM (ANALYZE, INDEX_CLEANUP off, TRUNCATE false) items, "Odd ""Name"" (x)" (a, "B")`);
    expect(vacuum).toEqual({
      command: 'VACUUM',
      options: ` (ANALYZE, INDEX_CLEANUP 'off', TRUNCATE 'false')`,
      tables: [
        { name: '"items"', columns: '' },
        { name: '"Odd ""Name"" (x)"', columns: ' ("a", "B")' },
      ],
    });
    expect(maintenanceSql(vacuum, [{ qualified: 'ws.items', columns: '' }, { qualified: 'ws."Odd ""Name"" (x)"', columns: ' ("a", "B")' }])).toBe(
      `VACUUM (ANALYZE, INDEX_CLEANUP 'off', TRUNCATE 'false') ws.items, ws."Odd ""Name"" (x)" ("a", "B")`,
    );
    expect(await parseMaintenance('analyse verbose')).toEqual({ command: 'ANALYZE', options: ' (VERBOSE)', tables: [] });
    expect(await parseMaintenance('VACUUM FULL other.t')).toMatchObject({ options: ' (FULL)', tables: [{ name: '"other"."t"', columns: '' }] });
  });

  it('refuses database-wide options with the ones it takes', async () => {
    await expect(parseMaintenance('VACUUM (ONLY_DATABASE_STATS)')).rejects.toThrow(/VACUUM option ONLY_DATABASE_STATS is not available to a workspace; use FULL, FREEZE/);
    await expect(parseMaintenance('ANALYZE (BUFFER_USAGE_LIMIT 256) t')).rejects.toThrow(/ANALYZE option BUFFER_USAGE_LIMIT is not available to a workspace; use VERBOSE, SKIP_LOCKED\./);
  });
});
