/**
 * FedBuff (Nguyen et al., 2022): asynchronous clients train from whatever version they downloaded;
 * the server buffers K accepted updates and then takes one optimizer step.
 *
 * Weighting: update i enters the buffer with weight n_i · w(s_i) (examples × staleness weight), and
 * the buffer is divided by Σ n_i, the examples alone. Staleness therefore shrinks the step instead
 * of being normalized away, and with w ≡ 1 the step direction is exactly FedAvg's example-weighted
 * mean of deltas (so K = cohort size from one version reproduces FedAvg, and K = 1 reproduces
 * sequential SGD on the client pseudo-gradients).
 */
import { OrchardError } from '../../core/errors.ts';
import { accumulate, allocAccumulator } from '../aggregate.ts';
import type { OptimizerSpec, StalenessSpec } from '../spec.ts';
import { type StalenessWeight, stalenessWeight } from '../staleness.ts';
import type { Assignment, ClientUpdate, Strategy, TimerOutcome, UpdateOutcome } from '../types.ts';
import { checkUpdate, normalize, reject, ServerStepper } from './common.ts';

export interface FedBuffOptions {
  readonly bufferSize: number;
  readonly staleness: StalenessSpec;
  readonly maxStaleness: number;
  readonly serverOptimizer: OptimizerSpec;
}

const NONE: readonly number[] = Object.freeze([]);

export class FedBuff implements Strategy {
  readonly name = 'fedbuff';
  private versionNo = 0;
  private readonly stepper: ServerStepper;
  private readonly weightOf: StalenessWeight;
  /** clientId → version it downloaded; cleared on report or dropout. */
  private readonly assigned = new Map<number, number>();
  private readonly buffer: Float32Array;
  private buffered = 0;
  private bufferedExamples = 0;

  constructor(
    private readonly options: FedBuffOptions,
    initialParams: Float32Array,
  ) {
    if (!(Number.isInteger(options.bufferSize) && options.bufferSize > 0))
      throw new OrchardError(
        'CONFIG_INVALID',
        `bufferSize must be a positive integer, got ${options.bufferSize}`,
      );
    this.stepper = new ServerStepper(options.serverOptimizer, initialParams);
    this.weightOf = stalenessWeight(options.staleness);
    this.buffer = allocAccumulator(initialParams.length);
  }

  get version(): number {
    return this.versionNo;
  }
  get params(): Float32Array {
    return this.stepper.params;
  }
  /** Updates waiting in the buffer (exposed for tests and progress reports). */
  get bufferedUpdates(): number {
    return this.buffered;
  }

  demand(_now: number, inFlight: number, concurrency: number): number {
    return Math.max(0, concurrency - inFlight);
  }

  assign(clientId: number, _now: number): Assignment {
    if (this.assigned.has(clientId))
      throw new OrchardError('INVALID_STATE', `client ${clientId} is already training`);
    this.assigned.set(clientId, this.versionNo);
    return { version: this.versionNo, params: this.stepper.params };
  }

  onUpdate(update: ClientUpdate, _now: number): UpdateOutcome {
    const base = this.assigned.get(update.clientId);
    if (base === undefined)
      return reject(
        'not_assigned',
        `client ${update.clientId} is not training (never assigned or already reported)`,
      );
    // The trip is over whatever the verdict: a client reports once per assignment.
    this.assigned.delete(update.clientId);
    const bad = checkUpdate(update, this.buffer.length, this.versionNo, base);
    if (bad) return bad;
    const s = this.versionNo - update.baseVersion;
    if (s > this.options.maxStaleness)
      return reject('stale', `staleness ${s} exceeds maxStaleness ${this.options.maxStaleness}`, s);
    const w = this.weightOf(s);
    if (w <= 0) return reject('stale', `staleness ${s} has zero weight`, s);
    const weight = update.numExamples * w;
    accumulate(this.buffer, weight, update.delta);
    this.buffered++;
    this.bufferedExamples += update.numExamples;
    let stepped = false;
    if (this.buffered >= this.options.bufferSize) {
      normalize(this.buffer, this.bufferedExamples);
      this.stepper.step(this.buffer);
      this.versionNo++;
      this.buffer.fill(0);
      this.buffered = 0;
      this.bufferedExamples = 0;
      stepped = true;
    }
    return { kind: 'accepted', staleness: s, weight, stepped, version: this.versionNo, abandoned: NONE };
  }

  onDropout(clientId: number, _now: number): void {
    this.assigned.delete(clientId);
  }

  nextDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  onTimer(_now: number): TimerOutcome {
    return { stepped: false, version: this.versionNo, abandoned: NONE };
  }
}
