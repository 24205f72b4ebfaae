#!/usr/bin/env node
import { ConfigError, parseCommand, USAGE } from './config.js';
import { migrateWorkspaces } from './commands/migrate-workspaces.js';
import { packageVersion } from './package-info.js';
import { serveHttp } from './mcp/serve-http.js';
import { serveStdio } from './mcp/serve-stdio.js';

let command;
try {
  command = parseCommand(process.argv.slice(2), process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`pg-workspace-mcp: ${error.message}\n`);
  process.exit(2);
}

switch (command.kind) {
  case 'help':
    process.stdout.write(USAGE);
    break;
  case 'version':
    process.stdout.write(`${packageVersion}\n`);
    break;
  case 'db-url': {
    const { printDbUrl } = await import('./commands/db-url.js');
    process.exitCode = await printDbUrl(command.config);
    break;
  }
  case 'doctor': {
    const { doctorCommand } = await import('./commands/doctor.js');
    process.exitCode = await doctorCommand(command.config, command);
    break;
  }
  case 'repair': {
    const { repairCommand } = await import('./commands/repair.js');
    process.exitCode = await repairCommand(command.config, command);
    break;
  }
  case 'drop-workspace': {
    const { dropWorkspaceCommand } = await import('./commands/drop-workspace.js');
    process.exitCode = await dropWorkspaceCommand(command.config, command);
    break;
  }
  case 'rename-workspace': {
    const { renameWorkspaceCommand } = await import('./commands/rename-workspace.js');
    process.exitCode = await renameWorkspaceCommand(command.config, command);
    break;
  }
  case 'snapshots': {
    const { snapshotCommand } = await import('./commands/snapshots.js');
    process.exitCode = await snapshotCommand(command.config, command);
    break;
  }
  case 'reembed': {
    const { reembedWorkspaces } = await import('./commands/reembed.js');
    process.exitCode = await reembedWorkspaces(command.config, command.projectId);
    break;
  }
  case 'migrate-workspaces':
    process.exitCode = await migrateWorkspaces(command.config, command);
    break;
  case 'serve':
    if (command.http) await serveHttp(command.config, command.http);
    else await serveStdio(command.config);
}
