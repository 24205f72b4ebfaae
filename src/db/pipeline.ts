import type { PipelineField, PipelineOutcome, PipelineStep } from './database.js';

/** The backend messages a pipeline reacts to, as `pg-protocol` parses them for both drivers. */
export type PipelineMessage =
  | { name: 'rowDescription'; fields: PipelineField[] }
  | { name: 'dataRow'; fields: (string | null)[] }
  | { name: 'commandComplete' | 'emptyQuery' | 'noData' }
  | { name: 'error' };

/** Writes a pipeline through a protocol serializer (pg's connection or pg-protocol's `serialize`). */
export interface PipelineWriter {
  parse(opts: { text: string }): void;
  bind(opts: { values: (string | null)[] }): void;
  execute(opts: Record<string, never>): void;
  describe(opts: { type: 'P'; name: string }): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sync(): void;
}

/**
 * Seeds random() afresh from a strong source (gen_random_uuid: 48 random bits): after
 * `setseed()`, or after reading a few outputs, one workspace could predict another's random()
 * on a shared session.
 */
export const RESEED_RANDOM =
  `pg_catalog.setseed((('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 12))` +
  `::pg_catalog.bit(48)::pg_catalog.int8)::pg_catalog.float8 OPERATOR(pg_catalog./) 281474976710656)`;

/**
 * Run on the same session after a pipeline failed: the rollback keeps prepared statements,
 * session advisory locks, the random seed and sequences' currval/lastval, and agent code may
 * have changed them before the sandbox's own clean-up could run (say, in the open's planning,
 * when the fetch then fails before its body starts).
 */
export const AFTER_FAILED_PIPELINE = `SELECT pg_catalog.pg_advisory_unlock_all(), ${RESEED_RANDOM}; DEALLOCATE ALL; DISCARD SEQUENCES`;

/**
 * The clean-up after a failed pipeline: one that opened an explicit transaction (its first step
 * BEGIN, as a read-only `query`'s does, to end in ROLLBACK) is still in it, failed, since Sync
 * ends only the protocol's implicit transaction; it is rolled back first. (A ROLLBACK outside a
 * transaction block would only warn, into the server log too.)
 */
export function afterFailedPipeline(steps: readonly PipelineStep[]): string {
  const first = steps[0];
  return first && 'sql' in first && first.sql === 'BEGIN' ? `ROLLBACK; ${AFTER_FAILED_PIPELINE}` : AFTER_FAILED_PIPELINE;
}

/**
 * After the server's own VACUUM or ANALYZE on the embedded store's shared session: they run a
 * table's code (index expressions, as the table's owner, in a security-restricted operation that
 * refuses PREPARE), which may take session advisory locks the next user of the session would
 * hold, seed random() (setseed) for it, or draw from a sequence its lastval() would then name.
 * One statement each, for a pipeline's steps.
 */
export const AFTER_TABLE_CODE_STEPS = [`SELECT pg_catalog.pg_advisory_unlock_all(), ${RESEED_RANDOM}`, 'DISCARD SEQUENCES'] as const;
export const AFTER_TABLE_CODE = AFTER_TABLE_CODE_STEPS.join('; ');

/**
 * A pipeline whose answer lacks steps though no step failed: its driver lost part of the reply
 * (this happened on the embedded store, see PGliteDatabase.pipeline). Its result is unknown, so
 * it is an error rather than an empty result a caller would take for the truth.
 */
export class IncompletePipelineError extends Error {
  override name = 'IncompletePipelineError';

  constructor(answered: number, steps: number) {
    super(
      `The database answered ${answered} of the ${steps} steps of this call and reported no error, so its result is unknown ` +
        '(it is not returned, rather than an empty or wrong one). Retry the call; a change made by execute may have been ' +
        'committed, so check before repeating it.',
    );
  }
}

/** The outcome, or IncompletePipelineError when it answered fewer steps than were sent without an error. */
export function completeOutcome(outcome: PipelineOutcome, steps: readonly PipelineStep[]): PipelineOutcome {
  if (outcome.error === undefined && outcome.results.length !== steps.length) {
    throw new IncompletePipelineError(outcome.results.length, steps.length);
  }
  return outcome;
}

export function writePipeline(steps: readonly PipelineStep[], out: PipelineWriter): void {
  for (const step of steps) {
    if ('describePortal' in step) {
      out.describe({ type: 'P', name: step.describePortal });
    } else {
      out.parse({ text: step.sql });
      out.bind({ values: [...(step.params ?? [])] });
      out.execute({});
      // The server reads the data as soon as the COPY starts, before the steps after it: no need to wait for its CopyInResponse.
      if (step.copyIn) {
        out.sendCopyFromChunk(Buffer.from(step.copyIn.buffer, step.copyIn.byteOffset, step.copyIn.byteLength));
        out.endCopyFrom();
      }
    }
  }
  out.sync();
}

/** Collects the answers step by step: a describe ends with its RowDescription, a statement with CommandComplete. */
export class PipelineCollector {
  readonly outcome: PipelineOutcome = { results: [] };
  #current: PipelineOutcome['results'][number] = { rows: [], fields: [] };

  constructor(private readonly steps: readonly PipelineStep[]) {}

  on(message: PipelineMessage | { name: string }, error?: unknown): void {
    const step = this.steps[this.outcome.results.length];
    switch (message.name) {
      case 'rowDescription':
        this.#current.fields = (message as { fields: PipelineField[] }).fields.map((f) => ({
          name: f.name,
          dataTypeID: f.dataTypeID,
          dataTypeModifier: f.dataTypeModifier,
        }));
        if (step && 'describePortal' in step) this.#finish();
        break;
      case 'noData':
        if (step && 'describePortal' in step) this.#finish();
        break;
      case 'dataRow':
        this.#current.rows.push((message as { fields: (string | null)[] }).fields);
        break;
      case 'commandComplete':
      case 'emptyQuery':
        this.#finish();
        break;
      case 'error':
        this.outcome.error ??= error ?? message;
        break;
    }
  }

  #finish(): void {
    this.outcome.results.push(this.#current);
    this.#current = { rows: [], fields: [] };
  }
}
