import type { Config } from '../config.js';
import { diagnose, formatDoctorReport, memberDatabaseGone } from '../operations/doctor.js';
import { EXIT_FINDINGS, EXIT_HEALTHY, goneMemberDatabases, onMemberDatabases, print, withDatabase } from './database-command.js';

/**
 * `pg-workspace-mcp doctor`: the read-only report; 0 healthy, 1 findings, 2 could not run. Each
 * member database the workspaces are spread over (databases/placements.ts) gets a report of its own.
 */
export function doctorCommand(config: Config, options: { json: boolean }): Promise<number> {
  return withDatabase('doctor', config, options.json, async (db, plan) => {
    const report = await diagnose(db, plan, { home: config.databaseUrl !== undefined });
    const gone = (await goneMemberDatabases(db, config)).map(memberDatabaseGone);
    report.findings.push(...gone);
    report.healthy &&= gone.length === 0;
    const members = await onMemberDatabases(db, config, (member) => diagnose(member, plan));
    if (options.json) {
      const memberReports = members.map((m) => ({ name: m.database, report: m.result }));
      print(`${JSON.stringify(members.length > 0 ? { ...report, member_databases: memberReports } : report, null, 2)}\n`);
    } else {
      print(formatDoctorReport(report));
      for (const m of members) print(`\nMember database ${m.database}:\n${formatDoctorReport(m.result)}`);
    }
    return report.healthy && members.every((m) => m.result.healthy) ? EXIT_HEALTHY : EXIT_FINDINGS;
  });
}
