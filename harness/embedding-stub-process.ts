import { fork } from 'node:child_process';
import { once } from 'node:events';

/** The loopback embedding stub (embedding-stub.ts, default options) in a child process. */
export interface EmbeddingStubProcess {
  readonly openaiUrl: string;
  readonly ollamaUrl: string;
  /** Every request waits this long before its answer; resolves once the child has it. */
  setDelay(ms: number): Promise<void>;
  /** The CPU time (ms, user and system) the stub's process has used so far. */
  cpuMs(): Promise<number>;
  close(): Promise<void>;
}

/** Starts the stub in a Node process of its own, so its answers never wait on the caller's event loop. */
export async function startEmbeddingStubProcess(): Promise<EmbeddingStubProcess> {
  // Runs the compiled child beside this module (dist/harness/), as bench/ does.
  const child = fork(new URL('./embedding-stub-child.js', import.meta.url), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const [ready] = (await Promise.race([once(child, 'message'), once(child, 'exit').then(() => { throw new Error('the embedding stub process exited before listening'); })])) as [{ openaiUrl: string; ollamaUrl: string }];
  return {
    openaiUrl: ready.openaiUrl,
    ollamaUrl: ready.ollamaUrl,
    async setDelay(ms) {
      const acknowledged = once(child, 'message');
      child.send({ delayMs: ms });
      await acknowledged;
    },
    async cpuMs() {
      const answered = once(child, 'message') as Promise<[{ cpuMs: number }]>;
      child.send({ cpu: true });
      return (await answered)[0].cpuMs;
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.disconnect();
      await exited;
    },
  };
}
