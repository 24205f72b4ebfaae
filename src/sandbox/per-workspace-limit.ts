import pLimit, { type LimitFunction } from 'p-limit';

/**
 * At most `concurrency` calls at once for each workspace; the rest wait their turn, in order,
 * holding no connection. Without it, one workspace's burst of slow statements took every pooled
 * connection and another workspace's 2 ms query waited seconds behind it. A workspace with
 * nothing running or waiting has no entry.
 */
export class PerWorkspaceLimit {
  readonly #limits = new Map<string, LimitFunction>();

  constructor(readonly concurrency: number) {}

  run<T>(projectId: string, call: () => Promise<T>): Promise<T> {
    let limit = this.#limits.get(projectId);
    if (!limit) this.#limits.set(projectId, (limit = pLimit(this.concurrency)));
    const mine = limit;
    return mine(call).finally(() => {
      if (mine.activeCount === 0 && mine.pendingCount === 0 && this.#limits.get(projectId) === mine) this.#limits.delete(projectId);
    });
  }
}
