import type { Config } from '../config.js';
import { diagnose, formatDoctorReport } from '../operations/doctor.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, print, withDatabase } from './database-command.js';

/** `pg-workspace-mcp doctor`: the read-only report; 0 healthy, 1 findings, 2 could not run. */
export function doctorCommand(config: Config, options: { json: boolean }): Promise<number> {
  return withDatabase('doctor', config, options.json, async (db, plan) => {
    const report = await diagnose(db, plan);
    print(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report));
    return report.healthy ? EXIT_HEALTHY : EXIT_FINDINGS;
  });
}
