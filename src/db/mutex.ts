/** A FIFO lock for one process: PGlite has a single session, so its users take turns. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  /** Turns running or waiting. */
  #pending = 0;
  #turns = 0;
  #lastEnded = performance.now();
  #onFree: (() => void) | undefined;

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.#pending++;
    this.#turns++;
    const result = this.#tail.then(fn).finally(() => {
      this.#lastEnded = performance.now();
      if (--this.#pending === 0) this.#onFree?.();
    });
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** `listener` is told each time the last turn running or waiting ends. */
  onFree(listener: () => void): void {
    this.#onFree = listener;
  }

  /** Turns running or waiting now. */
  get pending(): number {
    return this.#pending;
  }

  /** Turns ever asked for: a count that moved means someone used the session. */
  get turns(): number {
    return this.#turns;
  }

  /** How long nobody has held or waited for a turn, in milliseconds (0 while someone does). */
  idleFor(): number {
    return this.#pending > 0 ? 0 : performance.now() - this.#lastEnded;
  }
}
