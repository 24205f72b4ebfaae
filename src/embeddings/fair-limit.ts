/**
 * At most `concurrency` provider requests at once for the whole server, handed out fairly: a
 * search's query first (one short request an agent waits for), then document batches taking
 * turns between workspaces, each workspace's in the order asked. A single first-come queue let
 * one workspace's loads (each add_documents call and index_directory run queues all its batches
 * at once) hold every other workspace's searches and loads behind them, for as long as the
 * provider took over hundreds of batches.
 */
export class FairLimit {
  #active = 0;
  readonly #queries: Array<() => void> = [];
  /** Waiting document batches per workspace; the Map's order is the turn order. */
  readonly #documents = new Map<string, Array<() => void>>();

  constructor(readonly concurrency: number) {}

  /** Runs `task` in its turn: `lane` is `query`, or the workspace whose documents it embeds. */
  async run<T>(lane: { query: true } | { documentsOf: string }, task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.concurrency || this.#queries.length > 0 || this.#documents.size > 0) {
      await new Promise<void>((start) => {
        if ('query' in lane) this.#queries.push(start);
        else {
          const waiting = this.#documents.get(lane.documentsOf);
          if (waiting) waiting.push(start);
          else this.#documents.set(lane.documentsOf, [start]);
        }
      });
    } else this.#active++;
    try {
      return await task();
    } finally {
      this.#next();
    }
  }

  /** A finished task's slot goes to the next in turn (its count stays taken), or is freed. */
  #next(): void {
    const query = this.#queries.shift();
    if (query) return query();
    const [turn] = this.#documents;
    if (!turn) {
      this.#active--;
      return;
    }
    const [workspace, waiting] = turn;
    const start = waiting.shift() as () => void;
    // To the back of the turn order, or gone when it has nothing more waiting.
    this.#documents.delete(workspace);
    if (waiting.length > 0) this.#documents.set(workspace, waiting);
    start();
  }
}
