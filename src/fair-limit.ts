/**
 * At most `concurrency` tasks at once for the whole server (and `perWorkspace` of one workspace),
 * handed out fairly: urgent ones first (a search's query embedding: one short request an agent
 * waits for), then the workspace with the fewest running, each workspace's in the order asked
 * (ties by who waited first). A single first-come queue let one workspace hold every other's
 * behind its own: the provider's requests (each add_documents call and index_directory run
 * queues all its batches at once), or index_directory's runs.
 */
export class FairLimit {
  #active = 0;
  readonly #activeOf = new Map<string, number>();
  readonly #urgent: Array<() => void> = [];
  /** Waiting tasks per workspace; the Map's order is who waited first. */
  readonly #waiting = new Map<string, Array<() => void>>();

  constructor(
    readonly concurrency: number,
    readonly perWorkspace = concurrency,
  ) {}

  /** Runs `task` in its turn: `lane` is urgent, or the workspace whose turn it waits for. */
  async run<T>(lane: { urgent: true } | { workspace: string }, task: () => Promise<T>): Promise<T> {
    const workspace = 'workspace' in lane ? lane.workspace : undefined;
    await new Promise<void>((start) => {
      if (workspace === undefined) this.#urgent.push(start);
      else this.#waiting.set(workspace, [...(this.#waiting.get(workspace) ?? []), start]);
      this.#dispatch();
    });
    try {
      return await task();
    } finally {
      this.#active--;
      if (workspace !== undefined) {
        const left = (this.#activeOf.get(workspace) ?? 1) - 1;
        if (left > 0) this.#activeOf.set(workspace, left);
        else this.#activeOf.delete(workspace);
      }
      this.#dispatch();
    }
  }

  #dispatch(): void {
    while (this.#active < this.concurrency) {
      const urgent = this.#urgent.shift();
      if (urgent) {
        this.#active++;
        urgent();
        continue;
      }
      let chosen: string | undefined;
      for (const workspace of this.#waiting.keys()) {
        const running = this.#activeOf.get(workspace) ?? 0;
        if (running < this.perWorkspace && (chosen === undefined || running < (this.#activeOf.get(chosen) ?? 0))) chosen = workspace;
      }
      if (chosen === undefined) return;
      const queue = this.#waiting.get(chosen) as Array<() => void>;
      const start = queue.shift() as () => void;
      // Behind the others that wait, or gone when it has nothing more waiting.
      this.#waiting.delete(chosen);
      if (queue.length > 0) this.#waiting.set(chosen, queue);
      this.#active++;
      this.#activeOf.set(chosen, (this.#activeOf.get(chosen) ?? 0) + 1);
      start();
    }
  }
}
