/**
 * FedBuff (Nguyen et al., 2022): asynchronous clients train from whatever version they downloaded;
 * the server buffers K accepted updates and then takes one optimizer step.
 *
 * Weighting: update i enters the buffer with weight n_i · w(s_i) (examples × staleness weight), and
 * the buffer is divided by Σ n_i, the examples alone. Staleness therefore shrinks the step instead
 * of being normalized away, and with w ≡ 1 the step direction is exactly FedAvg's example-weighted
 * mean of deltas (so K = cohort size from one version reproduces FedAvg, and K = 1 reproduces
 * sequential SGD on the client pseudo-gradients).
 *
 * With a privacy block (DP-FedBuff, see dp.ts): each update is clipped, weighted by its staleness
 * weight alone (≤ 1, never by examples), the buffer sum is noised and divided by K.
 */
import { OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { RandomSource } from '../../privacy/dp/noise.ts';
import { secureBufferSumBlocking } from '../../privacy/secagg/blocking.ts';
import type { BufferContribution } from '../../privacy/secagg/buffer.ts';
import { SecAggError } from '../../privacy/secagg/errors.ts';
import { accumulate, allocAccumulator } from '../aggregate.ts';
import type { OptimizerSpec, PrivacySpec, SecureAggregationSpec, StalenessSpec } from '../spec.ts';
import type {
  Assignment,
  ClientUpdate,
  DurableStrategy,
  Strategy,
  StrategySnapshot,
  TimerOutcome,
  UpdateOutcome,
} from '../types.ts';
import { AsyncAdmission, checkSnapshotVersion, normalize, ServerStepper } from './common.ts';
import {
  DpAggregator,
  type PrivacyReport,
  type PrivacySpent,
  type PrivateStrategy,
  resolvePrivacy,
} from './dp.ts';

export interface FedBuffOptions {
  readonly bufferSize: number;
  readonly staleness: StalenessSpec;
  readonly maxStaleness: number;
  readonly serverOptimizer: OptimizerSpec;
  /** User-level DP (absent: none). */
  readonly privacy?: PrivacySpec | undefined;
  /** Each buffer summed by secure aggregation (absent: plaintext buffer). */
  readonly secureAggregation?: SecureAggregationSpec | undefined;
}

/** A member of the forming secure-aggregation group: the client's own input, before masking. */
interface GroupMember {
  readonly clientId: number;
  readonly delta: Float32Array;
  readonly numExamples: number;
  readonly stalenessWeight: number;
}

const NONE: readonly number[] = Object.freeze([]);

export class FedBuff implements Strategy, DurableStrategy, Partial<PrivateStrategy> {
  readonly name: string;
  private readonly dp: DpAggregator | undefined;
  private versionNo = 0;
  private readonly stepper: ServerStepper;
  private readonly admission: AsyncAdmission;
  private readonly buffer: Float32Array;
  private buffered = 0;
  private bufferedExamples = 0;

  constructor(
    private readonly options: FedBuffOptions,
    initialParams: Float32Array,
    /** Noise source override for tests (default: WebCrypto). */
    noiseSource?: RandomSource,
  ) {
    if (!(Number.isInteger(options.bufferSize) && options.bufferSize > 0))
      throw new OrchardError(
        'CONFIG_INVALID',
        `bufferSize must be a positive integer, got ${options.bufferSize}`,
      );
    if (options.secureAggregation !== undefined && options.privacy !== undefined)
      throw new OrchardError(
        'CONFIG_INVALID',
        'FedBuff with both privacy and secureAggregation is not supported yet',
      );
    this.stepper = new ServerStepper(options.serverOptimizer, initialParams);
    this.admission = new AsyncAdmission(options.staleness, options.maxStaleness);
    this.dp =
      options.privacy === undefined
        ? undefined
        : new DpAggregator(
            resolvePrivacy(options.privacy, options.bufferSize),
            initialParams.length,
            noiseSource,
          );
    this.secAgg = options.secureAggregation;
    this.secAggRng = new Rng(options.secureAggregation?.seed ?? 0);
    this.name =
      this.dp === undefined ? (this.secAgg === undefined ? 'fedbuff' : 'fedbuff-secagg') : 'dp-fedbuff';
    // The DP path sums into its own buffer; the plain one is not needed then.
    this.buffer = this.dp === undefined ? allocAccumulator(initialParams.length) : new Float32Array(0);
    this.numParams = initialParams.length;
    const dp = this.dp;
    // Present only with DP, so isPrivate(strategy) tells drivers whether to ask.
    if (dp !== undefined) {
      this.privacySpent = () => dp.privacySpent();
      this.wouldExceedBudget = () => dp.wouldExceedBudget();
      this.privacyReport = () => dp.privacyReport();
    }
  }
  private readonly numParams: number;
  private readonly secAgg: SecureAggregationSpec | undefined;
  private readonly secAggRng: Rng;
  private group: GroupMember[] = [];
  /** Secure-aggregation groups that aborted below threshold (their updates were dropped). */
  abortedGroups = 0;

  privacySpent?(): PrivacySpent;
  wouldExceedBudget?(): boolean;
  privacyReport?(): PrivacyReport;

  get version(): number {
    return this.versionNo;
  }
  get params(): Float32Array {
    return this.stepper.params;
  }
  /** Updates waiting in the buffer (exposed for tests and progress reports). */
  get bufferedUpdates(): number {
    return this.dp?.pending ?? (this.secAgg === undefined ? this.buffered : this.group.length);
  }

  demand(_now: number, inFlight: number, concurrency: number): number {
    return Math.max(0, concurrency - inFlight);
  }

  assign(clientId: number, _now: number): Assignment {
    this.admission.assign(clientId, this.versionNo);
    return { version: this.versionNo, params: this.stepper.params };
  }

  resumeAssignment(clientId: number, version: number): void {
    this.admission.resume(clientId, version, this.versionNo);
  }

  /** The plain buffer only: DP accounting and secure-aggregation groups are not checkpointed. */
  private checkSnapshotable(): void {
    if (this.dp !== undefined || this.secAgg !== undefined)
      throw new OrchardError('INVALID_STATE', `${this.name} does not support snapshots`);
  }

  snapshot(): StrategySnapshot {
    this.checkSnapshotable();
    return {
      version: this.versionNo,
      params: new Float32Array(this.stepper.params),
      buffer: { sum: new Float32Array(this.buffer), count: this.buffered, examples: this.bufferedExamples },
      optimizer: this.stepper.exportState(),
    };
  }

  restore(snapshot: StrategySnapshot): void {
    this.checkSnapshotable();
    checkSnapshotVersion(snapshot.version);
    const buffer = snapshot.buffer ?? { sum: new Float32Array(this.numParams), count: 0, examples: 0 };
    if (buffer.sum.length !== this.numParams)
      throw new OrchardError(
        'SHAPE_MISMATCH',
        `snapshot buffer has ${buffer.sum.length} values, the model ${this.numParams}`,
      );
    this.stepper.restore(snapshot.params, snapshot.optimizer ?? { steps: 0, slots: [] });
    this.buffer.set(buffer.sum);
    this.buffered = buffer.count;
    this.bufferedExamples = buffer.examples;
    this.versionNo = snapshot.version;
  }

  onUpdate(update: ClientUpdate, _now: number): UpdateOutcome {
    // The DP path's norm rejects non-finite updates itself (fail closed), in the same pass.
    const admitted = this.admission.admit(update, this.numParams, this.versionNo, this.dp === undefined);
    if ('kind' in admitted) return admitted;
    if (this.dp !== undefined) return this.onPrivateUpdate(update, admitted, this.dp);
    if (this.secAgg !== undefined) return this.onSecureUpdate(update, admitted, this.secAgg);
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

  /**
   * The update joins the forming group as its client's own (unmasked) input; the server side only
   * ever receives the protocol's output, Σ (n_u / n_max)·w_u·Δ_u over the survivors.
   */
  private onSecureUpdate(
    update: ClientUpdate,
    admitted: { readonly staleness: number; readonly weight: number },
    spec: SecureAggregationSpec,
  ): UpdateOutcome {
    this.group.push({
      clientId: update.clientId,
      delta: update.delta,
      numExamples: update.numExamples,
      stalenessWeight: admitted.weight,
    });
    const weight = update.numExamples * admitted.weight;
    if (this.group.length < this.options.bufferSize)
      return {
        kind: 'accepted',
        staleness: admitted.staleness,
        weight,
        stepped: false,
        version: this.versionNo,
        abandoned: NONE,
      };
    const members = this.group;
    this.group = [];
    // Example counts are public here, as in the plain protocol; they set the shared scale so every
    // client's weight lies in [0, 1].
    let maxExamples = 0;
    for (const m of members) maxExamples = Math.max(maxExamples, m.numExamples);
    const contributions: BufferContribution[] = members.map((m) => ({
      clientId: m.clientId,
      delta: m.delta,
      weight: (m.numExamples / maxExamples) * m.stalenessWeight,
    }));
    const vanished: number[] = [];
    for (let i = 0; i < members.length; i++) if (this.secAggRng.next() < spec.dropoutRate) vanished.push(i);
    let sum: ReturnType<typeof secureBufferSumBlocking>;
    try {
      sum = secureBufferSumBlocking(contributions, {
        clip: spec.clipRange,
        maxWeight: 1,
        mode: spec.mode,
        graphSeed: spec.seed + this.versionNo,
        modulusBits: spec.modulusBits,
        dropouts: { beforeMaskedInput: vanished },
      });
    } catch (error) {
      if (error instanceof SecAggError && error.reason === 'BELOW_THRESHOLD') {
        this.abortedGroups++;
        return {
          kind: 'rejected',
          reason: 'secagg_abort',
          message: `secure-aggregation group of ${members.length} aborted: ${error.message}`,
          count: members.length,
        };
      }
      throw error;
    }
    const included = new Set(sum.included);
    let examples = 0;
    for (const m of members) if (included.has(m.clientId)) examples += m.numExamples;
    // Σ (n/n_max)·w·Δ · n_max / Σ n: plain FedBuff's buffer normalized by the survivors' examples.
    const step = new Float32Array(sum.weightedSum.length);
    const scale = maxExamples / examples;
    for (let i = 0; i < step.length; i++) step[i] = (sum.weightedSum[i] as number) * scale;
    this.stepper.step(step);
    this.versionNo++;
    return {
      kind: 'accepted',
      staleness: admitted.staleness,
      weight,
      stepped: true,
      version: this.versionNo,
      abandoned: NONE,
    };
  }

  private onPrivateUpdate(
    update: ClientUpdate,
    admitted: { readonly staleness: number; readonly weight: number },
    dp: DpAggregator,
  ): UpdateOutcome {
    const weight = Math.min(1, admitted.weight);
    const added = dp.add(update.delta, weight);
    if ('kind' in added) return added;
    let stepped = false;
    if (dp.pending >= this.options.bufferSize) {
      this.stepper.step(dp.release());
      this.versionNo++;
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
