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
import type { Assignment, ClientUpdate, Strategy, TimerOutcome, UpdateOutcome } from '../types.ts';
import { AsyncAdmission, normalize, ServerStepper } from './common.ts';

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
  private readonly admission: AsyncAdmission;
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
    this.admission = new AsyncAdmission(options.staleness, options.maxStaleness);
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
    this.admission.assign(clientId, this.versionNo);
    return { version: this.versionNo, params: this.stepper.params };
  }

  onUpdate(update: ClientUpdate, _now: number): UpdateOutcome {
    const admitted = this.admission.admit(update, this.buffer.length, this.versionNo);
    if ('kind' in admitted) return admitted;
    const weight = update.numExamples * admitted.weight;
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
    return {
      kind: 'accepted',
      staleness: admitted.staleness,
      weight,
      stepped,
      version: this.versionNo,
      abandoned: NONE,
    };
  }

  onDropout(clientId: number, _now: number): void {
    this.admission.drop(clientId);
  }

  nextDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }

  onTimer(_now: number): TimerOutcome {
    return { stepped: false, version: this.versionNo, abandoned: NONE };
  }
}
