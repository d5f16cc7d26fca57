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
 *
 * With a secureAggregation block each buffer is one SecAgg group and the server part only receives
 * the protocol's output (src/privacy/secagg/README.md, "Secure aggregation under FedBuff"). Groups
 * form by arrival (the K updates that would fill a plaintext buffer) or at check-in (clients join a
 * forming cohort when assigned; it closes at K reports, at its timeout, or when nobody is left).
 */
import { ConfigError, invalidArgument, OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { RandomSource } from '../../privacy/dp/noise.ts';
import { secureBufferSumBlocking } from '../../privacy/secagg/blocking.ts';
import { type BufferContribution, type GroupShape, groupShape } from '../../privacy/secagg/buffer.ts';
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
import { AsyncAdmission, checkSnapshot, copySnapshot, normalize, ServerStepper } from './common.ts';
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
/** Stands in for a silent member's delta (never read by the protocol). */
const EMPTY = new Float32Array(0);

/** A check-in cohort: members in check-in order (their protocol ids), reports, departures. */
interface Cohort {
  readonly members: number[];
  readonly reports: Map<number, GroupMember>;
  /** Members that dropped out or whose report was rejected: they will never send a masked input. */
  readonly gone: Set<number>;
  /** Infinity while members may still join; then closing time + groupTimeout (or now, if done). */
  deadline: number;
}

/** Members of a check-in cohort: ⌈K·(1 + overSelection)⌉. */
export function checkinGroupSize(bufferSize: number, spec: SecureAggregationSpec): number {
  return Math.ceil(bufferSize * (1 + spec.overSelection) - 1e-9);
}

/**
 * The group shape a FedBuff secure-aggregation spec implies for buffer size K; a ConfigError with
 * `secureAggregation.*` paths when it is invalid (threshold not a majority of holders or above K,
 * neighbour count impossible for the group).
 */
export function secureGroupShape(bufferSize: number, spec: SecureAggregationSpec): GroupShape {
  const size = spec.grouping === 'checkin' ? checkinGroupSize(bufferSize, spec) : bufferSize;
  const shape = groupShape({
    size,
    mode: spec.mode,
    reporters: bufferSize,
    neighbours: spec.neighbours,
    threshold: spec.threshold,
  });
  if ('issues' in shape)
    throw new ConfigError(
      shape.issues.map((i) => ({
        path: `secureAggregation.${i.field === 'size' ? 'bufferSize' : i.field}`,
        message: i.message,
      })),
      'secure aggregation config',
    );
  return shape;
}

/** A pre-weighted partial sum for `FedBuff.foldPartial`. */
export interface PreWeightedPartial {
  /** Σ nᵢ·w(sᵢ)·Δᵢ: examples × staleness weight, as `onUpdate` weights each update. */
  readonly sum: Float32Array;
  /** Σ nᵢ: the examples alone (the buffer is normalized by these). */
  readonly examples: number;
  /** Updates covered (they count towards the buffer size K). */
  readonly count: number;
}

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
    this.secAggShape =
      options.secureAggregation === undefined
        ? undefined
        : secureGroupShape(options.bufferSize, options.secureAggregation);
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
  private readonly secAggShape: GroupShape | undefined;
  private readonly secAggRng: Rng;
  private group: GroupMember[] = [];
  /** Check-in grouping: the cohort open for joining, and every cohort by member. */
  private forming: Cohort | undefined;
  private readonly cohortOf = new Map<number, Cohort>();
  private readonly openCohorts = new Set<Cohort>();
  /** Secure-aggregation groups that aborted below threshold (their updates were dropped). */
  abortedGroups = 0;
  /** Reports lost in aborted groups (counted in outcomes too, except for groups closed by a timer). */
  abortedUpdates = 0;

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
    if (this.dp !== undefined) return this.dp.pending;
    if (this.secAgg === undefined) return this.buffered;
    let n = this.group.length;
    for (const c of this.openCohorts) n += c.reports.size;
    return n;
  }

  private get checkin(): boolean {
    return this.secAgg?.grouping === 'checkin';
  }

  demand(_now: number, inFlight: number, concurrency: number): number {
    return Math.max(0, concurrency - inFlight);
  }

  assign(clientId: number, now: number): Assignment {
    this.admission.assign(clientId, this.versionNo);
    if (this.checkin) this.joinCohort(clientId, now);
    return { version: this.versionNo, params: this.stepper.params };
  }

  /**
   * Check-in: the client joins the forming cohort (round 0, its keys, happens now; round 1, the
   * shares, once the cohort is complete — both before its update exists). A full cohort stops
   * taking members and its timeout starts.
   */
  private joinCohort(clientId: number, now: number): void {
    const size = (this.secAggShape as GroupShape).size;
    let cohort = this.forming;
    if (cohort === undefined) {
      cohort = { members: [], reports: new Map(), gone: new Set(), deadline: Number.POSITIVE_INFINITY };
      this.forming = cohort;
      this.openCohorts.add(cohort);
    }
    cohort.members.push(clientId);
    this.cohortOf.set(clientId, cohort);
    if (cohort.members.length >= size) this.stopJoining(cohort, now);
  }

  private stopJoining(cohort: Cohort, now: number): void {
    if (this.forming === cohort) this.forming = undefined;
    cohort.deadline = now + ((this.secAgg as SecureAggregationSpec).groupTimeout ?? Number.POSITIVE_INFINITY);
    this.closeIfSettled(cohort, now);
  }

  /** A full cohort whose every member has reported or left has nothing to wait for. */
  private closeIfSettled(cohort: Cohort, now: number): void {
    if (this.forming !== cohort && cohort.reports.size + cohort.gone.size >= cohort.members.length)
      cohort.deadline = Math.min(cohort.deadline, now);
  }

  /** A member that will never send a masked input (dropout, rejected report). */
  private leaveCohort(clientId: number, now: number): void {
    const cohort = this.cohortOf.get(clientId);
    if (cohort === undefined) return;
    this.cohortOf.delete(clientId);
    cohort.gone.add(clientId);
    this.closeIfSettled(cohort, now);
  }

  resumeAssignment(clientId: number, version: number): void {
    this.admission.resume(clientId, version, this.versionNo);
  }

  /** The buffer and, with DP, the privacy ledger; secure-aggregation groups are not checkpointed. */
  private checkSnapshotable(): void {
    if (this.secAgg !== undefined)
      throw new OrchardError('INVALID_STATE', `${this.name} does not support snapshots`);
  }

  snapshot(): StrategySnapshot {
    return copySnapshot(this.view());
  }

  view(): StrategySnapshot {
    this.checkSnapshotable();
    const dp = this.dp?.exportState();
    return {
      version: this.versionNo,
      params: this.stepper.params,
      buffer:
        dp === undefined
          ? { sum: this.buffer, count: this.buffered, examples: this.bufferedExamples }
          : { sum: dp.sum, count: dp.state.norms.length, examples: this.bufferedExamples },
      optimizer: this.stepper.exportState(),
      ...(dp === undefined ? {} : { privacy: dp.state }),
    };
  }

  restore(snapshot: StrategySnapshot): void {
    this.checkSnapshotable();
    checkSnapshot(snapshot, this.numParams);
    const buffer = snapshot.buffer ?? { sum: new Float32Array(this.numParams), count: 0, examples: 0 };
    if (buffer.sum.length !== this.numParams)
      throw new OrchardError(
        'SHAPE_MISMATCH',
        `snapshot buffer has ${buffer.sum.length} values, the model ${this.numParams}`,
      );
    if ((snapshot.privacy === undefined) !== (this.dp === undefined))
      throw new OrchardError(
        'INVALID_ARGUMENT',
        `snapshot ${snapshot.privacy === undefined ? 'lacks' : 'has'} a privacy ledger, ${this.name} ${this.dp === undefined ? 'has no DP' : 'needs one'}`,
      );
    if (this.dp !== undefined && snapshot.privacy !== undefined)
      this.dp.importState(snapshot.privacy, buffer.sum);
    this.stepper.restore(snapshot.params, snapshot.optimizer ?? { steps: 0, slots: [] });
    if (this.dp === undefined) this.buffer.set(buffer.sum);
    this.buffered = buffer.count;
    this.bufferedExamples = buffer.examples;
    this.versionNo = snapshot.version;
  }

  onUpdate(update: ClientUpdate, now: number): UpdateOutcome {
    // The DP path's norm rejects non-finite updates itself (fail closed), in the same pass.
    const admitted = this.admission.admit(update, this.numParams, this.versionNo, this.dp === undefined);
    if ('kind' in admitted) {
      if (this.checkin && admitted.reason !== 'not_assigned') this.leaveCohort(update.clientId, now);
      return admitted;
    }
    if (this.dp !== undefined) return this.onPrivateUpdate(update, admitted, this.dp);
    if (this.checkin) return this.onCheckinUpdate(update, admitted, now);
    if (this.secAgg !== undefined) return this.onSecureUpdate(update, admitted);
    const weight = update.numExamples * admitted.weight;
    accumulate(this.buffer, weight, update.delta);
    this.buffered++;
    this.bufferedExamples += update.numExamples;
    const stepped = this.stepIfFull();
    return this.accepted(admitted, weight, stepped);
  }

  /** Plain buffer: once it holds K updates, steps with their example-weighted mean and empties it. */
  private stepIfFull(): boolean {
    if (this.buffered < this.options.bufferSize) return false;
    normalize(this.buffer, this.bufferedExamples);
    this.stepper.step(this.buffer);
    this.versionNo++;
    this.buffer.fill(0);
    this.buffered = 0;
    this.bufferedExamples = 0;
    return true;
  }

  /** The outcome of an admitted update, at the version after any step it triggered. */
  private accepted(
    admitted: { readonly staleness: number },
    weight: number,
    stepped: boolean,
    abandoned: readonly number[] = NONE,
  ): UpdateOutcome {
    return {
      kind: 'accepted',
      staleness: admitted.staleness,
      weight,
      stepped,
      version: this.versionNo,
      abandoned,
    };
  }

  /**
   * Folds a partial aggregate that was weighted elsewhere (scaled-out aggregators): `sum` is
   * Σ nᵢ·w(sᵢ)·Δᵢ and `examples` Σ nᵢ over `count` updates, each already admitted (staleness
   * checked and weighted by whoever accepted it). Equivalent to `onUpdate` of those updates one by
   * one while the buffer does not fill in between; a partial is folded whole, so when it fills the
   * buffer the step covers every update in it (the buffer may then hold more than K). Plain
   * FedBuff only: the DP and secure-aggregation paths need each update on its own.
   */
  foldPartial(partial: PreWeightedPartial): { readonly stepped: boolean; readonly version: number } {
    if (this.dp !== undefined || this.secAgg !== undefined)
      throw new OrchardError('INVALID_STATE', `${this.name} cannot fold pre-summed partials`);
    const { sum, examples, count } = partial;
    if (sum.length !== this.numParams)
      throw new OrchardError(
        'SHAPE_MISMATCH',
        `partial has ${sum.length} values, the model ${this.numParams}`,
      );
    if (!(Number.isSafeInteger(count) && count > 0))
      throw invalidArgument(`partial count must be a positive integer, got ${count}`);
    if (!(Number.isFinite(examples) && examples >= 0))
      throw invalidArgument(`partial examples must be a finite number ≥ 0, got ${examples}`);
    for (let i = 0; i < sum.length; i++)
      if (!Number.isFinite(sum[i] as number)) throw invalidArgument(`partial sum[${i}] is not finite`);
    accumulate(this.buffer, 1, sum);
    this.buffered += count;
    this.bufferedExamples += examples;
    const stepped = this.stepIfFull();
    return { stepped, version: this.versionNo };
  }

  /**
   * The update joins the forming group as its client's own (unmasked) input; the server side only
   * ever receives the protocol's output, Σ (n_u / n_max)·w_u·Δ_u over the survivors.
   */
  private onSecureUpdate(
    update: ClientUpdate,
    admitted: { readonly staleness: number; readonly weight: number },
  ): UpdateOutcome {
    this.group.push({
      clientId: update.clientId,
      delta: update.delta,
      numExamples: update.numExamples,
      stalenessWeight: admitted.weight,
    });
    const weight = update.numExamples * admitted.weight;
    if (this.group.length < this.options.bufferSize) return this.accepted(admitted, weight, false);
    const members = this.group;
    this.group = [];
    const result = this.secureStep(members, NONE);
    if (result.kind === 'aborted')
      return {
        kind: 'rejected',
        reason: 'secagg_abort',
        message: result.message,
        count: members.length,
      };
    return this.accepted(admitted, weight, true);
  }

  /**
   * Check-in grouping: the report is the member's own input, weighted client-side by the staleness
   * the server announces at the masked-input round (the current version), since the server never
   * sees it alone. The K-th report closes the cohort.
   */
  private onCheckinUpdate(
    update: ClientUpdate,
    admitted: { readonly staleness: number; readonly weight: number },
    now: number,
  ): UpdateOutcome {
    const weight = update.numExamples * admitted.weight;
    const cohort = this.cohortOf.get(update.clientId);
    if (cohort === undefined)
      throw new OrchardError('INVALID_STATE', `client ${update.clientId} is in no secure-aggregation cohort`);
    this.cohortOf.delete(update.clientId);
    cohort.reports.set(update.clientId, {
      clientId: update.clientId,
      delta: update.delta,
      numExamples: update.numExamples,
      stalenessWeight: admitted.weight,
    });
    if (cohort.reports.size < this.options.bufferSize) {
      this.closeIfSettled(cohort, now);
      return this.accepted(admitted, weight, false);
    }
    const closed = this.closeCohort(cohort);
    if (closed.kind === 'aborted')
      return {
        kind: 'rejected',
        reason: 'secagg_abort',
        message: closed.message,
        count: closed.lost,
      };
    return this.accepted(admitted, weight, true, closed.abandoned);
  }

  /**
   * Ends a cohort: its members that never reported are stragglers, abandoned here and treated by
   * the protocol as dropouts after sharing keys (their masks are removed from t shares); the
   * reports are summed by the protocol.
   */
  private closeCohort(cohort: Cohort):
    | { readonly kind: 'stepped'; readonly abandoned: readonly number[] }
    | {
        readonly kind: 'aborted';
        readonly message: string;
        readonly lost: number;
        readonly abandoned: readonly number[];
      } {
    const abandoned = this.endCohort(cohort);
    const result =
      cohort.members.length < 3
        ? ({ kind: 'aborted', message: `a cohort of ${cohort.members.length} is too small` } as const)
        : this.secureStep(
            cohort.members.map(
              (id) =>
                cohort.reports.get(id) ?? { clientId: id, delta: EMPTY, numExamples: 0, stalenessWeight: 0 },
            ),
            cohort.members.flatMap((id, i) => (cohort.reports.has(id) ? [] : [i])),
          );
    if (result.kind === 'aborted') return { ...result, lost: cohort.reports.size, abandoned };
    return { kind: 'stepped', abandoned };
  }

  /** Takes a cohort off the open set and abandons its members that neither reported nor left. */
  private endCohort(cohort: Cohort): number[] {
    if (this.forming === cohort) this.forming = undefined;
    this.openCohorts.delete(cohort);
    const abandoned: number[] = [];
    for (const id of cohort.members)
      if (!cohort.reports.has(id) && !cohort.gone.has(id)) {
        abandoned.push(id);
        this.admission.drop(id);
        this.cohortOf.delete(id);
      }
    return abandoned;
  }

  /**
   * One group through the real protocol: `members` in protocol order, `silent` the positions that
   * shared keys but will send no masked input (their delta is never read). On success steps the
   * model with the survivors' example-weighted mean; below threshold counts an abort.
   */
  private secureStep(
    members: readonly GroupMember[],
    silent: readonly number[],
  ): { readonly kind: 'stepped' } | { readonly kind: 'aborted'; readonly message: string } {
    const spec = this.secAgg as SecureAggregationSpec;
    const shape = this.secAggShape as GroupShape;
    // Example counts are public here, as in the plain protocol; they set the shared scale so every
    // client's weight lies in [0, 1].
    let maxExamples = 0;
    for (const m of members) maxExamples = Math.max(maxExamples, m.numExamples);
    const zeros = new Float32Array(this.numParams);
    const contributions: BufferContribution[] = members.map((m) => ({
      clientId: m.clientId,
      delta: m.delta.length === 0 ? zeros : m.delta,
      weight: maxExamples > 0 ? (m.numExamples / maxExamples) * m.stalenessWeight : 0,
    }));
    const silentSet = new Set(silent);
    const vanished = [...silent];
    for (let i = 0; i < members.length; i++)
      if (!silentSet.has(i) && this.secAggRng.next() < spec.dropoutRate) vanished.push(i);
    const lost = members.length - silent.length;
    let sum: ReturnType<typeof secureBufferSumBlocking>;
    try {
      sum = secureBufferSumBlocking(contributions, {
        clip: spec.clipRange,
        maxWeight: 1,
        mode: spec.mode,
        graphSeed: spec.seed + this.versionNo,
        modulusBits: spec.modulusBits,
        ...(spec.mode === 'secagg+' ? { degree: shape.degree } : {}),
        threshold: shape.threshold,
        dropouts: { beforeMaskedInput: vanished },
      });
    } catch (error) {
      if (error instanceof SecAggError && error.reason === 'BELOW_THRESHOLD') {
        this.abortedGroups++;
        this.abortedUpdates += lost;
        return {
          kind: 'aborted',
          message: `secure-aggregation group of ${members.length} aborted: ${error.message}`,
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
    return { kind: 'stepped' };
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
    return this.accepted(admitted, weight, stepped);
  }

  onDropout(clientId: number, now: number): void {
    this.admission.drop(clientId);
    if (this.checkin) this.leaveCohort(clientId, now);
  }

  nextDeadline(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const c of this.openCohorts) if (c.deadline < next) next = c.deadline;
    return next;
  }

  /**
   * Closes every cohort whose timeout passed (or that has nothing left to wait for) with the reports
   * it has. A cohort that aborts here loses its reports without a 'rejected' outcome to carry them:
   * they are counted in abortedUpdates.
   */
  onTimer(now: number): TimerOutcome {
    let stepped = false;
    const abandoned: number[] = [];
    for (const cohort of [...this.openCohorts]) {
      if (cohort.deadline > now) continue;
      // Nothing to sum: no protocol run, no abort counted.
      if (cohort.reports.size === 0) {
        abandoned.push(...this.endCohort(cohort));
        continue;
      }
      const closed = this.closeCohort(cohort);
      abandoned.push(...closed.abandoned);
      if (closed.kind === 'stepped') stepped = true;
    }
    return { stepped, version: this.versionNo, abandoned: abandoned.length > 0 ? abandoned : NONE };
  }
}
