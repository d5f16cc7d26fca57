/**
 * Synchronous rounds (FedAvg / FedAvgM / FedAdam, Reddi et al. 2021 for the server optimizers).
 *
 * A round selects ceil(cohortSize · (1 + overSelection)) clients, all training from the same
 * version. It closes as soon as cohortSize updates arrived; clients still training are handed back
 * as `abandoned` and their late updates are rejected as 'wrong_round'. It also closes at
 * roundTimeout after its first assignment, or once every selected client has reported or dropped
 * out: with at least minUpdates updates the server steps, otherwise the round is discarded and a new
 * one (same version) starts. The server step feeds the example-weighted mean delta to the server
 * optimizer as its gradient.
 *
 * With a privacy block (DP-FedAvg / DP-FedAvgM, see dp.ts): every update has weight 1 (not its
 * example count) and is clipped; the round's sum is noised and divided by cohortSize, also when a
 * timed-out round closes with fewer updates (a fixed denominator).
 *
 * Durable (for the network server): `snapshot` captures the open round (its number, partial sum,
 * how many of its clients are accounted for, its open/close times), `restore` adopts it, and
 * `resumeAssignment(client, version, round)` re-establishes a client of the current round or of a
 * closed one (its update is then rejected 'wrong_round'), `resumeDeparted(n, …)` re-counts clients
 * that left the current round without an update (they keep their slots), and `endRound` closes the
 * round at once, as its deadline would.
 */
import { ConfigError, OrchardError } from '../../core/errors.ts';
import type { RandomSource } from '../../privacy/dp/noise.ts';
import { accumulate, allocAccumulator } from '../aggregate.ts';
import type { OptimizerSpec, PrivacySpec } from '../spec.ts';
import type {
  Assignment,
  ClientUpdate,
  DurableStrategy,
  Strategy,
  StrategySnapshot,
  TimerOutcome,
  UpdateOutcome,
} from '../types.ts';
import {
  checkSnapshot,
  checkUpdate,
  copySnapshot,
  normalize,
  type Rejection,
  reject,
  ServerStepper,
} from './common.ts';
import {
  DpAggregator,
  type PrivacyReport,
  type PrivacySpent,
  type PrivateStrategy,
  resolvePrivacy,
} from './dp.ts';

export interface SyncOptions {
  readonly cohortSize: number;
  readonly overSelection: number;
  readonly roundTimeout: number;
  readonly minUpdates: number;
  readonly serverOptimizer: OptimizerSpec;
  /** User-level DP (absent: none). */
  readonly privacy?: PrivacySpec | undefined;
}

const NONE: readonly number[] = Object.freeze([]);

/** Strategy name by server optimizer, as used in reports. */
export function syncName(optimizer: OptimizerSpec): 'fedavg' | 'fedavgm' | 'fedadam' {
  return optimizer.kind === 'sgd' ? 'fedavg' : optimizer.kind === 'momentum' ? 'fedavgm' : 'fedadam';
}

export class SyncRounds implements Strategy, DurableStrategy, Partial<PrivateStrategy> {
  readonly name: string;
  private readonly dp: DpAggregator | undefined;
  privacySpent?(): PrivacySpent;
  wouldExceedBudget?(): boolean;
  privacyReport?(): PrivacyReport;
  private versionNo = 0;
  private roundNo = 0;
  private readonly stepper: ServerStepper;
  /** Clients selected per round, over-selection included. */
  readonly selectionTarget: number;
  /** clientId → round it was selected for; stragglers of closed rounds stay until they report or drop. */
  private readonly assigned = new Map<number, number>();
  /** Clients of the current round still training. */
  private readonly outstanding = new Set<number>();
  private selected = 0;
  private openedAt = Number.NaN;
  private closeDueAt = Number.POSITIVE_INFINITY;
  private readonly buffer: Float32Array;
  private readonly numParams: number;
  private received = 0;
  private receivedExamples = 0;

  constructor(
    private readonly options: SyncOptions,
    initialParams: Float32Array,
    /** Noise source override for tests (default: WebCrypto). */
    noiseSource?: RandomSource,
  ) {
    const issues = [];
    if (!(Number.isInteger(options.cohortSize) && options.cohortSize > 0))
      issues.push({ path: 'cohortSize', message: `must be a positive integer, got ${options.cohortSize}` });
    if (!(options.overSelection >= 0 && Number.isFinite(options.overSelection)))
      issues.push({ path: 'overSelection', message: `must be finite and ≥ 0, got ${options.overSelection}` });
    if (!(options.roundTimeout > 0))
      issues.push({ path: 'roundTimeout', message: `must be > 0, got ${options.roundTimeout}` });
    if (
      !(
        Number.isInteger(options.minUpdates) &&
        options.minUpdates > 0 &&
        options.minUpdates <= options.cohortSize
      )
    )
      issues.push({
        path: 'minUpdates',
        message: `must be an integer in [1, cohortSize=${options.cohortSize}], got ${options.minUpdates}`,
      });
    if (issues.length > 0) throw new ConfigError(issues, 'sync strategy');
    this.stepper = new ServerStepper(options.serverOptimizer, initialParams);
    const dp =
      options.privacy === undefined
        ? undefined
        : new DpAggregator(
            resolvePrivacy(options.privacy, options.cohortSize),
            initialParams.length,
            noiseSource,
          );
    this.dp = dp;
    this.name =
      dp === undefined ? syncName(options.serverOptimizer) : `dp-${syncName(options.serverOptimizer)}`;
    // The DP path sums into its own buffer.
    this.buffer = dp === undefined ? allocAccumulator(initialParams.length) : new Float32Array(0);
    this.numParams = initialParams.length;
    // Present only with DP, so isPrivate(strategy) tells drivers whether to ask.
    if (dp !== undefined) {
      this.privacySpent = () => dp.privacySpent();
      this.wouldExceedBudget = () => dp.wouldExceedBudget();
      this.privacyReport = () => dp.privacyReport();
    }
    // The small relative slack keeps 100 · 1.3 = 130.00000000000003 from becoming 131.
    const raw = options.cohortSize * (1 + options.overSelection);
    this.selectionTarget = Math.max(options.cohortSize, Math.ceil(raw - raw * 1e-12));
  }

  get version(): number {
    return this.versionNo;
  }
  get params(): Float32Array {
    return this.stepper.params;
  }
  /** The current round number (restarts count as new rounds). */
  get round(): number {
    return this.roundNo;
  }
  /** Updates received so far in the current round. */
  get receivedThisRound(): number {
    return this.received;
  }

  demand(_now: number, inFlight: number, concurrency: number): number {
    return Math.max(0, Math.min(this.selectionTarget - this.selected, concurrency - inFlight));
  }

  assign(clientId: number, now: number): Assignment {
    if (this.assigned.has(clientId))
      throw new OrchardError('INVALID_STATE', `client ${clientId} is already training`);
    if (this.selected === 0) this.openedAt = now;
    this.selected++;
    this.assigned.set(clientId, this.roundNo);
    this.outstanding.add(clientId);
    return { version: this.versionNo, params: this.stepper.params, round: this.roundNo };
  }

  /**
   * Client `clientId` trains from `version` for `round` (default: the current round), as if it had
   * been assigned back then; `now` opens the round's clock when it is not running yet. A client of a
   * closed round is only remembered (its update will be rejected 'wrong_round'); one of the current
   * round must hold the current version. Rounds from the future are refused: a driver closes the
   * current round first (`endRound`).
   */
  resumeAssignment(clientId: number, version: number, round = this.roundNo, now?: number): void {
    if (this.assigned.has(clientId))
      throw new OrchardError('INVALID_STATE', `client ${clientId} is already training`);
    if (!(Number.isInteger(round) && round >= 0 && round <= this.roundNo))
      throw new OrchardError(
        'INVALID_STATE',
        `cannot resume an assignment of round ${round} (current ${this.roundNo})`,
      );
    if (round === this.roundNo && version !== this.versionNo)
      throw new OrchardError(
        'UNKNOWN_VERSION',
        `round ${round} trains version ${this.versionNo}, not ${version}`,
      );
    this.assigned.set(clientId, round);
    if (round !== this.roundNo) return;
    if (this.selected === 0 && Number.isNaN(this.openedAt) && now !== undefined) this.openedAt = now;
    this.selected++;
    this.outstanding.add(clientId);
  }

  /**
   * Clients selected for the current round that left it without an accepted update (dropped out or
   * rejected). They keep their slots: the round still counts them against the selection target.
   */
  get departedThisRound(): number {
    return Math.max(0, this.selected - this.outstanding.size - this.received);
  }

  /**
   * Recovery: `departed` clients were selected for the current round and left it without an accepted
   * update, so they keep their slots (departures the round already counts, from a snapshot, are not
   * added twice). `openedAt` opens the round's clock when it is not running yet; a round this leaves
   * without prospects closes through the timer at `now`.
   */
  resumeDeparted(departed: number, openedAt: number | undefined, now: number): void {
    if (!(Number.isInteger(departed) && departed >= 0))
      throw new OrchardError('INVALID_ARGUMENT', `departed must be an integer ≥ 0, got ${departed}`);
    const missing = departed - this.departedThisRound;
    if (missing <= 0) return;
    if (Number.isNaN(this.openedAt) && openedAt !== undefined) this.openedAt = openedAt;
    this.selected += missing;
    if (this.exhausted()) this.closeDueAt = Math.min(this.closeDueAt, now);
  }

  /** Closes the current round now, as its deadline would (steps with ≥ minUpdates, else restarts). */
  endRound(): TimerOutcome {
    const closed = this.closeRound();
    return { stepped: closed.stepped, version: this.versionNo, abandoned: closed.abandoned };
  }

  /** With DP, the round's clipped sum and the privacy ledger (steps released, clip norm) too. */
  snapshot(): StrategySnapshot {
    return copySnapshot(this.view());
  }

  view(): StrategySnapshot {
    const dp = this.dp?.exportState();
    return {
      version: this.versionNo,
      params: this.stepper.params,
      buffer: {
        sum: dp?.sum ?? this.buffer,
        count: this.received,
        examples: this.receivedExamples,
      },
      optimizer: this.stepper.exportState(),
      ...(dp === undefined ? {} : { privacy: dp.state }),
      round: {
        number: this.roundNo,
        settled: this.selected - this.outstanding.size,
        openedAt: Number.isNaN(this.openedAt) ? null : this.openedAt,
        closeDueAt: Number.isFinite(this.closeDueAt) ? this.closeDueAt : null,
      },
    };
  }

  /** Adopts a snapshot; open assignments are dropped (resume them with resumeAssignment). */
  restore(snapshot: StrategySnapshot): void {
    checkSnapshot(snapshot, this.numParams);
    if ((snapshot.privacy === undefined) !== (this.dp === undefined))
      throw new OrchardError(
        'INVALID_ARGUMENT',
        `snapshot ${snapshot.privacy === undefined ? 'lacks' : 'has'} a privacy ledger, ${this.name} ${this.dp === undefined ? 'has no DP' : 'needs one'}`,
      );
    const buffer = snapshot.buffer ?? { sum: new Float32Array(this.numParams), count: 0, examples: 0 };
    if (buffer.sum.length !== this.numParams)
      throw new OrchardError(
        'SHAPE_MISMATCH',
        `snapshot buffer has ${buffer.sum.length} values, the model ${this.numParams}`,
      );
    const round = snapshot.round ?? { number: 0, settled: 0, openedAt: null, closeDueAt: null };
    if (
      !(
        Number.isInteger(round.number) &&
        round.number >= 0 &&
        Number.isInteger(round.settled) &&
        round.settled >= 0 &&
        Number.isInteger(buffer.count) &&
        buffer.count >= 0 &&
        buffer.count < this.options.cohortSize
      )
    )
      throw new OrchardError(
        'INVALID_ARGUMENT',
        `snapshot round ${round.number} (settled ${round.settled}, ${buffer.count} updates) is not a state a cohort of ${this.options.cohortSize} can be in`,
      );
    if (snapshot.privacy !== undefined && buffer.count !== snapshot.privacy.norms.length)
      throw new OrchardError(
        'INVALID_ARGUMENT',
        `snapshot round holds ${buffer.count} updates but ${snapshot.privacy.norms.length} norms`,
      );
    if (this.dp !== undefined && snapshot.privacy !== undefined)
      this.dp.importState(snapshot.privacy, buffer.sum);
    this.stepper.restore(snapshot.params, snapshot.optimizer ?? { steps: 0, slots: [] });
    this.versionNo = snapshot.version;
    this.roundNo = round.number;
    if (this.dp === undefined) this.buffer.set(buffer.sum);
    this.received = buffer.count;
    this.receivedExamples = buffer.examples;
    this.selected = round.settled;
    this.openedAt = round.openedAt ?? Number.NaN;
    this.closeDueAt = round.closeDueAt ?? Number.POSITIVE_INFINITY;
    this.assigned.clear();
    this.outstanding.clear();
  }

  onUpdate(update: ClientUpdate, now: number): UpdateOutcome {
    const round = this.assigned.get(update.clientId);
    if (round === undefined)
      return reject(
        'not_assigned',
        `client ${update.clientId} is not training (never assigned or already reported)`,
      );
    this.assigned.delete(update.clientId);
    if (round !== this.roundNo)
      return reject(
        'wrong_round',
        `client ${update.clientId} was selected for round ${round}, now ${this.roundNo}`,
      );
    this.outstanding.delete(update.clientId);
    const bad =
      checkUpdate(update, this.numParams, this.versionNo, this.versionNo, this.dp === undefined) ??
      (this.dp === undefined ? null : this.addPrivate(update.delta, this.dp));
    if (bad) {
      // The model must not change on a rejection, so a round this leaves without prospects is closed
      // through the timer, right away.
      if (this.exhausted()) this.closeDueAt = now;
      return bad;
    }
    if (this.dp === undefined) accumulate(this.buffer, update.numExamples, update.delta);
    this.received++;
    this.receivedExamples += update.numExamples;
    let stepped = false;
    let abandoned = NONE;
    if (this.received >= this.options.cohortSize || this.exhausted()) {
      const closed = this.closeRound();
      stepped = closed.stepped;
      abandoned = closed.abandoned;
    }
    return {
      kind: 'accepted',
      staleness: 0,
      weight: this.dp === undefined ? update.numExamples : 1,
      stepped,
      version: this.versionNo,
      abandoned,
    };
  }

  /** DP path: clip and add with weight 1; a rejection leaves the sum untouched. */
  private addPrivate(delta: Float32Array, dp: DpAggregator): Rejection | null {
    const added = dp.add(delta, 1);
    return 'kind' in added ? added : null;
  }

  onDropout(clientId: number, _now: number): void {
    const round = this.assigned.get(clientId);
    if (round === undefined) return;
    this.assigned.delete(clientId);
    if (round !== this.roundNo) return;
    this.outstanding.delete(clientId);
    // Nobody is left to abandon, so closing here loses no information for the driver.
    if (this.exhausted()) this.closeRound();
  }

  nextDeadline(): number {
    const timeout = Number.isNaN(this.openedAt)
      ? Number.POSITIVE_INFINITY
      : this.openedAt + this.options.roundTimeout;
    return Math.min(timeout, this.closeDueAt);
  }

  onTimer(now: number): TimerOutcome {
    if (now < this.nextDeadline()) return { stepped: false, version: this.versionNo, abandoned: NONE };
    const closed = this.closeRound();
    return { stepped: closed.stepped, version: this.versionNo, abandoned: closed.abandoned };
  }

  /** Every selected client is accounted for, and the cohort was not filled. */
  private exhausted(): boolean {
    return this.selected >= this.selectionTarget && this.outstanding.size === 0;
  }

  private closeRound(): { stepped: boolean; abandoned: readonly number[] } {
    const abandoned = this.outstanding.size > 0 ? Array.from(this.outstanding) : NONE;
    this.outstanding.clear();
    const stepped = this.received >= this.options.minUpdates;
    if (stepped) {
      if (this.dp !== undefined) this.stepper.step(this.dp.release());
      else {
        normalize(this.buffer, this.receivedExamples);
        this.stepper.step(this.buffer);
      }
      this.versionNo++;
    }
    this.dp?.discard();
    this.buffer.fill(0);
    this.received = 0;
    this.receivedExamples = 0;
    this.roundNo++;
    this.selected = 0;
    this.openedAt = Number.NaN;
    this.closeDueAt = Number.POSITIVE_INFINITY;
    return { stepped, abandoned };
  }
}
