import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { distribution, type Distribution } from './stats.js';
import { MAIN, NOOP_SERVER, transport } from './stdio-boot.js';

export interface IdleFigures {
  /** One call each, made after the server had been idle for `pauseMs`. */
  afterIdle: Distribution;
  /** The call made right after each of those, on the same server: a warm call in the same round. */
  warm: Distribution;
  /** Rounds whose call after the pause ran on a connection the server had to open anew. */
  reconnected: number;
}

/** The server process and the call a round times. */
export interface IdleCall {
  script: string;
  tool: string;
  arguments: Record<string, unknown>;
}

export const LIST_WORKSPACES: IdleCall = { script: MAIN, tool: 'list_workspaces', arguments: { limit: 5 } };
/**
 * The floor: the same server's no-op tool, which touches no database, so what a pause costs it
 * is the cost of waking two idle processes (client and server) and their pipes, not ours.
 */
export const NOOP_TOOL: IdleCall = { script: NOOP_SERVER, tool: 'noop', arguments: {} };

/**
 * Scenario 8: agents call tools seconds to minutes apart, so the call users wait on most is the
 * first one after a pause. Each round sleeps `pauseMs` with the server idle, times one
 * call (`list_workspaces`, or the floor's no-op tool), then times the next one as the warm reference. `backends` lists the server's
 * backend pids: a pid not seen before the pause is a connection paid for by the call, a count
 * that a loaded machine's timings cannot blur.
 */
export async function callAfterIdle(
  call: IdleCall,
  args: string[],
  env: Record<string, string>,
  rounds: number,
  pauseMs: number,
  backends: () => Promise<number[]>,
): Promise<IdleFigures> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(transport(call.script, args, env));
  const timed = async () => {
    const started = performance.now();
    await client.callTool({ name: call.tool, arguments: call.arguments });
    return performance.now() - started;
  };
  try {
    for (let i = 0; i < 5; i++) await timed();
    const afterIdle: number[] = [];
    const warm: number[] = [];
    let reconnected = 0;
    for (let round = 0; round < rounds; round++) {
      const before = new Set(await backends());
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      afterIdle.push(await timed());
      if ((await backends()).some((pid) => !before.has(pid))) reconnected++;
      warm.push(await timed());
    }
    return { afterIdle: distribution(afterIdle), warm: distribution(warm), reconnected };
  } finally {
    await client.close();
  }
}
