#!/usr/bin/env node
import { ConfigError, parseCommand, USAGE } from './config.js';
import { migrateWorkspaces } from './migrate-workspaces-command.js';
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
    const { printDbUrl } = await import('./db-url-command.js');
    process.exitCode = await printDbUrl(command.config);
    break;
  }
  case 'doctor':
  case 'repair':
  case 'drop-workspace':
  case 'rename-workspace':
  case 'snapshots': {
    const { runOperation } = await import('./operations/operations-command.js');
    process.exitCode = await runOperation(command);
    break;
  }
  case 'reembed': {
    const { reembedWorkspaces } = await import('./reembed-command.js');
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
