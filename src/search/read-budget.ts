/**
 * The most bytes of file text all index_directory runs of one server hold at once (read, chunked,
 * waiting for the provider or the workspace's turn to write): the largest `max_file_bytes` a call
 * may ask for. Each run holds about one batch, but nothing bounded the number of runs: an agent
 * could start one per subdirectory (or per workspace), each holding a file of up to 64 MiB and
 * its chunks, until the process ran out of memory, for every session.
 */
export const READ_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * Bytes shared by the runs of a server, handed out in the order asked. A run asks only while it
 * holds none (it writes its batch first), so no run waits for bytes another waiting run holds.
 */
export class ReadBudget {
  #used = 0;
  readonly #waiting: Array<{ bytes: number; grant: () => void }> = [];

  constructor(readonly capacity = READ_BUDGET_BYTES) {}

  /** Takes `bytes` (at most the capacity) if they fit now and nobody waits before: what it took, undefined when nothing. */
  tryTake(bytes: number): number | undefined {
    const wanted = Math.min(bytes, this.capacity);
    if (this.#waiting.length > 0 || this.#used + wanted > this.capacity) return undefined;
    this.#used += wanted;
    return wanted;
  }

  /** Waits until `bytes` fit (at most the capacity, so one file alone always does), and says what it took; rejects when `signal` aborts first. */
  take(bytes: number, signal?: AbortSignal): Promise<number> {
    const now = this.tryTake(bytes);
    if (now !== undefined) return Promise.resolve(now);
    signal?.throwIfAborted();
    const wanted = Math.min(bytes, this.capacity);
    return new Promise((resolve, reject) => {
      const entry = {
        bytes: wanted,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(wanted);
        },
      };
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(entry), 1);
        this.#grantWaiting();
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  /** Takes `bytes` at once, past the capacity if need be: a file grown since the walk (by at most its max_file_bytes). */
  force(bytes: number): void {
    this.#used += bytes;
  }

  give(bytes: number): void {
    this.#used -= bytes;
    this.#grantWaiting();
  }

  #grantWaiting(): void {
    for (let next = this.#waiting[0]; next && this.#used + next.bytes <= this.capacity; next = this.#waiting[0]) {
      this.#waiting.shift();
      this.#used += next.bytes;
      next.grant();
    }
  }
}
