import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { distribution, type Distribution } from './stats.js';
import { MAIN, transport } from './stdio-boot.js';

export interface IdleFigures {
  /** One call each, made after the server had been idle for `pauseMs`. */
  afterIdle: Distribution;
  /** The call made right after each of those, on the same server: a warm call in the same round. */
  warm: Distribution;
  /** Rounds whose call after the pause ran on a connection the server had to open anew. */
  reconnected: number;
}

/**
 * Scenario 8: agents call tools seconds to minutes apart, so the call users wait on most is the
 * first one after a pause. Each round sleeps `pauseMs` with the server idle, times one
 * `list_workspaces`, then times the next one as the warm reference. `backends` lists the server's
 * backend pids: a pid not seen before the pause is a connection paid for by the call, a count
 * that a loaded machine's timings cannot blur.
 */
export async function callAfterIdle(
  args: string[],
  env: Record<string, string>,
  rounds: number,
  pauseMs: number,
  backends: () => Promise<number[]>,
): Promise<IdleFigures> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(transport(MAIN, args, env));
  const timed = async () => {
    const started = performance.now();
    await client.callTool({ name: 'list_workspaces', arguments: { limit: 5 } });
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
