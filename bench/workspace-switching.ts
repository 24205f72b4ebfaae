import { parseCommand } from '../src/config.js';
import { ProvisioningEngine } from '../src/engine.js';
import { silentLogger } from '../src/logger.js';
import { sampleInterleaved, type Distribution } from './stats.js';

/** Workspaces the calls pass between; the block's length is one more than the largest. */
export const SWITCH_WIDTHS = [2, 4, 8] as const;
const BLOCK = 1 + Math.max(...SWITCH_WIDTHS);

/**
 * Scenario 14: `query` on one engine (in process, configured as a server on DATABASE_URL is)
 * passing between 2, 4 and 8 workspaces, against the same number of calls on one workspace.
 * Each sample is a block of nine calls that starts and ends on the first workspace, so blocks
 * taking turns leave each other the same state: one workspace's block passes nowhere, the others'
 * pass to another workspace on each of their eight calls after the first.
 */
export async function workspaceSwitching(url: string, iterations: number): Promise<Record<'one' | `across${(typeof SWITCH_WIDTHS)[number]}`, Distribution>> {
  const command = parseCommand([], { DATABASE_URL: url, HOME: process.env['HOME'] ?? '/tmp' });
  if (command.kind !== 'serve') throw new Error('expected a serve configuration');
  const engine = new ProvisioningEngine(command.config, silentLogger);
  engine.start();
  try {
    const { sandbox } = await engine.ready(60_000);
    const query = (n: number) => sandbox.query(`bench-switch-${n}`, 'SELECT 1 AS one', []);
    const block = (width: number) => async () => {
      for (let call = 0; call < BLOCK; call++) await query(call % width);
    };
    return await sampleInterleaved(iterations, {
      one: block(1),
      across2: block(2),
      across4: block(4),
      across8: block(8),
    });
  } finally {
    await engine.close();
  }
}
