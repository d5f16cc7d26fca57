/**
 * Coordinator role: owns one task's model versions. It restores the latest checkpoint and replays
 * the journal on start, folds accepted updates into the task's strategy (the same src/fl state
 * machine the simulator drives), journals them in fold order, publishes a version only once every
 * update behind it is durable, and checkpoints every `checkpointEvery` versions (the storage drops
 * the journal prefix the checkpoint covers in the same transaction). A lease makes sure only one
 * coordinator acts for a task.
 *
 * Fencing: with a fenced lease (RedisLease, LocalFencedLease) the coordinator fences the storage
 * with its lease's token before it reads anything and passes the token with every append and
 * checkpoint, so once another coordinator took the task over nothing a deposed one writes lands
 * (StorageError 'FENCED' → it answers 503 and stops acting).
 *
 * Partial-sum leader (`partials`): aggregator processes journal each update they accept, fold it
 * into a partial sum and push the partial through the exchange; this coordinator combines partials
 * into the strategy (FedBuff.foldPartial) without reading the updates back. Exactly once: the
 * checkpoint records the journal seqs folded so far (a water mark below which every entry is
 * folded, plus the folded seqs above it); a partial with any seq already folded is not folded
 * whole (its other seqs are folded from the journal); partials are acknowledged only after a
 * checkpoint covering them is durable; and journal entries no partial brought within
 * `orphanAfterMs` (aggregator crashed before pushing, exchange lost its queue) are folded from the
 * journal. Staleness weights are computed by the accepting aggregator, against the newest version
 * it knows, and stored in the journal entry's response; the journal path uses that same value, so
 * an update weighs the same whichever path folds it. Each step is checkpointed before the version
 * is published, so a published version never changes after a crash.
 */
import { gzip } from 'node:zlib';
import { OrchardError } from '../core/errors.ts';
import { stalenessWeight } from '../fl/staleness.ts';
import { isPrivate, type PrivacySpent } from '../fl/strategies/dp.ts';
import type { PreWeightedPartial } from '../fl/strategies/fedbuff.ts';
import { SyncRounds } from '../fl/strategies/sync.ts';
import type { DurableStrategy, Strategy, StrategySnapshot, UpdateOutcome } from '../fl/types.ts';
import { evaluate } from '../nn/index.ts';
import { assignmentRound } from './assignment.ts';
import { ApiError } from './errors.ts';
import { FoldedCommitter, foldedEntry, JournalWriter, journalEntry } from './journal.ts';
import type { Lease } from './lease.ts';
import {
  decodeFrame,
  describeFinished,
  encodeFrame,
  type FinishedTask,
  FRAME_KIND_MODEL,
  type UpdateResponse,
} from './protocol.ts';
import { mergeCounts, RejectionTally } from './rejections.ts';
import type { DeliveredPartial, PartialExchange } from './scaleout/partials.ts';
import type { RoundCohort } from './selector.ts';
import {
  type AppendResult,
  type Checkpoint,
  type FoldedCommit,
  type JournalEntry,
  type MetricRecord,
  type Storage,
  StorageError,
} from './storage/types.ts';
import type { TaskRuntime } from './task.ts';

/** The privacy a DP strategy has spent so far (undefined without DP). */
function privacyOf(strategy: Strategy): PrivacySpent | undefined {
  return isPrivate(strategy) ? strategy.privacySpent() : undefined;
}

/**
 * A sync task's open round as stored (Storage.putRoundState), written before a device that joined
 * it is answered and after devices leave it: the round's deadline (the strategy's clock, seconds
 * since the epoch; null while no device joined), the devices selected for it that have not
 * reported or left, and how many selected devices left it without an accepted update (they keep
 * their slots; states written before this count existed read as 0).
 */
interface StoredRound {
  readonly round: number;
  readonly version: number;
  readonly deadline: number | null;
  readonly cohort: readonly { readonly assignmentId: string; readonly deadline: number }[];
  readonly departed: number;
}

export function parseStoredRound(state: unknown): StoredRound {
  const r = state as Partial<StoredRound> | null;
  if (
    r === null ||
    typeof r !== 'object' ||
    !Number.isInteger(r.round) ||
    !Number.isInteger(r.version) ||
    !(r.deadline === null || Number.isFinite(r.deadline)) ||
    !(r.departed === undefined || (Number.isInteger(r.departed) && (r.departed as number) >= 0)) ||
    !Array.isArray(r.cohort) ||
    !r.cohort.every(
      (m: unknown) =>
        typeof (m as { assignmentId?: unknown }).assignmentId === 'string' &&
        Number.isFinite((m as { deadline?: unknown }).deadline),
    )
  )
    throw new OrchardError('INVALID_STATE', 'the stored round state is malformed');
  return { ...(r as StoredRound), departed: r.departed ?? 0 };
}

/** Frame kind of the strategy state inside a checkpoint (never sent over the wire). */
const FRAME_KIND_STATE = 3;

/**
 * `foldedSeqs`: partial-sum leader only, the journal seqs above the checkpoint's journalSeq that
 * the state already includes.
 */
export function encodeStrategyState(
  snapshot: StrategySnapshot,
  foldedSeqs?: readonly number[],
  into?: Uint8Array,
): Uint8Array {
  const slots = snapshot.optimizer?.slots ?? [];
  const buffer = snapshot.buffer;
  const floats = buffer ? [buffer.sum, ...slots] : slots;
  const header = {
    version: snapshot.version,
    buffer: buffer ? { count: buffer.count, examples: buffer.examples } : null,
    optimizerSteps: snapshot.optimizer?.steps ?? 0,
    slots: slots.length,
    ...(snapshot.round === undefined ? {} : { round: snapshot.round }),
    ...(snapshot.privacy === undefined ? {} : { privacy: snapshot.privacy }),
    ...(foldedSeqs === undefined ? {} : { foldedSeqs }),
  };
  return encodeFrame(FRAME_KIND_STATE, header, floats, into);
}

export function decodeStrategyState(
  bytes: Uint8Array,
  params: Float32Array,
  version: number,
): StrategySnapshot {
  const { header, floats } = decodeFrame<{
    buffer: { count: number; examples: number } | null;
    optimizerSteps: number;
    slots: number;
    round?: StrategySnapshot['round'];
    privacy?: StrategySnapshot['privacy'];
  }>(bytes, FRAME_KIND_STATE);
  const n = params.length;
  const parts = (header.buffer ? 1 : 0) + header.slots;
  if (floats.length !== n * parts)
    throw new OrchardError(
      'INVALID_STATE',
      `checkpoint state has ${floats.length} floats, expected ${n * parts}`,
    );
  let at = 0;
  const next = () => {
    const part = floats.subarray(at, at + n);
    at += n;
    return part;
  };
  const buffer = header.buffer
    ? { sum: next(), count: header.buffer.count, examples: header.buffer.examples }
    : undefined;
  const slots = Array.from({ length: header.slots }, next);
  const round = header.round;
  if (
    round !== undefined &&
    !(
      round !== null &&
      typeof round === 'object' &&
      Number.isInteger(round.number) &&
      Number.isInteger(round.settled) &&
      (round.openedAt === null || typeof round.openedAt === 'number') &&
      (round.closeDueAt === null || typeof round.closeDueAt === 'number')
    )
  )
    throw new OrchardError('INVALID_STATE', 'checkpoint state has a malformed round');
  const privacy = header.privacy;
  if (
    privacy !== undefined &&
    !(
      privacy !== null &&
      typeof privacy === 'object' &&
      Number.isInteger(privacy.steps) &&
      typeof privacy.clipNorm === 'number' &&
      Array.isArray(privacy.norms) &&
      privacy.norms.every((x) => typeof x === 'number')
    )
  )
    throw new OrchardError('INVALID_STATE', 'checkpoint state has a malformed privacy ledger');
  const base = {
    version,
    params,
    optimizer: { steps: header.optimizerSteps, slots },
    ...(round === undefined ? {} : { round }),
    ...(privacy === undefined ? {} : { privacy }),
  };
  return buffer ? { ...base, buffer } : base;
}

/** The journal seqs above journalSeq a checkpoint's state already includes (see encodeStrategyState). */
export function decodeFoldedSeqs(bytes: Uint8Array): number[] {
  const { header } = decodeFrame<{ foldedSeqs?: unknown }>(bytes, FRAME_KIND_STATE);
  const seqs = header.foldedSeqs;
  if (seqs === undefined) return [];
  if (!(Array.isArray(seqs) && seqs.every((x) => Number.isSafeInteger(x) && x > 0)))
    throw new OrchardError('INVALID_STATE', 'checkpoint state has malformed foldedSeqs');
  return seqs as number[];
}

/** A strategy that folds pre-weighted partial sums (plain FedBuff). */
interface PartialFolding {
  foldPartial(partial: PreWeightedPartial): { readonly stepped: boolean; readonly version: number };
}

function foldsPartials(strategy: object): strategy is PartialFolding {
  return typeof (strategy as Partial<PartialFolding>).foldPartial === 'function';
}

/** A fenced lease (src/server/scaleout/lease.ts) also hands out a fencing token. */
interface FencingLease extends Lease {
  acquire(key: string, holder: string, ttlMs: number): Promise<{ readonly fencingToken: number } | null>;
}

/**
 * Where recovery starts: the latest checkpoint, or the task's folded state (Storage.commitFolded)
 * when that includes more of the journal (the checkpoint on a tie: the same updates).
 */
async function resumePoint(storage: Storage, taskId: string): Promise<Checkpoint | null> {
  const [checkpoint, folded] = await Promise.all([
    storage.latestCheckpoint(taskId),
    storage.foldedState(taskId),
  ]);
  if (folded === null || (checkpoint !== null && checkpoint.journalSeq >= folded.journalSeq))
    return checkpoint;
  return folded;
}

function isFencing(lease: Lease): lease is FencingLease {
  return typeof (lease as Partial<FencingLease>).acquire === 'function';
}

function isFenced(error: unknown): boolean {
  return error instanceof StorageError && error.code === 'FENCED';
}

export interface PartialLeaderOptions {
  readonly exchange: PartialExchange;
  /** How often the leader pulls partials (default 25 ms). */
  readonly pullIntervalMs?: number;
  /** How often it scans the journal above its water mark (default 500 ms). */
  readonly sweepIntervalMs?: number;
  /** A journal entry no partial brought within this long is folded from the journal (default 3 s). */
  readonly orphanAfterMs?: number;
}

/** What the aggregator hands over once an update passed every stateless check. */
export interface FoldInput {
  readonly idempotencyKey: string;
  /** The assignment's signed deadline: after it no upload under this key can be accepted. */
  readonly keyExpiresAt?: number;
  readonly deviceId: string;
  readonly assignmentId: string;
  readonly baseVersion: number;
  readonly numExamples: number;
  readonly delta: Float32Array;
  readonly trainLoss?: number;
  /** The aggregator proved `delta` finite (see ClientUpdate.verifiedFinite). */
  readonly verifiedFinite?: true;
  /**
   * Called once the coordinator reads `delta` no more, before `submit` settles where it can: with
   * folded commits (the state is stored, not the delta) right after the fold, so the caller's
   * pooled block takes the next body at once and stays warm in cache instead of waiting ~20-40 ms
   * for the commit. The caller still releases it after `submit` settles in every case.
   */
  readonly releaseDelta?: () => void;
}

export type Rejected = Extract<UpdateOutcome, { kind: 'rejected' }>;

export type ServerEvent =
  | {
      readonly type: 'version';
      readonly data: { readonly taskId: string; readonly version: number; readonly at: number };
    }
  | { readonly type: 'metrics'; readonly data: MetricRecord };

interface PublishedModel {
  readonly version: number;
  readonly params: Float32Array;
  /** DP tasks: the privacy spent by the steps behind this version. */
  readonly privacy?: PrivacySpent;
  frame?: Uint8Array;
  gzipped?: Promise<Uint8Array | null>;
}

export interface CoordinatorOptions {
  readonly storage: Storage;
  readonly lease: Lease;
  /** Identifies this coordinator process in the lease. */
  readonly holderId: string;
  readonly leaseTtlMs?: number;
  /** Published versions kept for download (clients may still be fetching an older one). */
  readonly keepVersions?: number;
  /** Clients training now (from the admission counter), for metrics. */
  readonly inFlight?: () => Promise<number>;
  readonly log?: (message: string) => void;
  /**
   * Distributed mode: aggregators in other processes journal updates and this coordinator folds
   * the journal in seq order, polling every `tailIntervalMs` (its own `submit` is not used). A
   * journaled update the strategy refuses at fold time (staler than maxStaleness by then) is
   * counted and skipped, the same way on every replay.
   */
  readonly tail?: boolean;
  readonly tailIntervalMs?: number;
  /** Distributed mode with a partial-aggregate exchange: lead the partial sums instead of tailing. */
  readonly partials?: PartialLeaderOptions;
  /**
   * Journal every accepted update's delta even where the task could store its state instead
   * (folded commits, see `Storage.commitFolded`): the way of the distributed modes, sync rounds and
   * DP tasks, and otherwise only for comparison (tests, benchmarks). Default false.
   */
  readonly journalDeltas?: boolean;
}

type State = 'stopped' | 'recovering' | 'ready' | 'lost_lease' | 'closed';

/** Accepted-update counts per second over a sliding window, for updates/s. */
class RateWindow {
  private readonly buckets = new Float64Array(10);
  private bucketSecond = 0;
  add(now: number): void {
    this.advance(now);
    const i = this.bucketSecond % this.buckets.length;
    this.buckets[i] = (this.buckets[i] as number) + 1;
  }
  perSecond(now: number): number {
    this.advance(now);
    let sum = 0;
    for (let i = 0; i < this.buckets.length; i++)
      if (i !== this.bucketSecond % this.buckets.length) sum += this.buckets[i] as number;
    return sum / (this.buckets.length - 1);
  }
  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second - this.bucketSecond >= this.buckets.length) this.buckets.fill(0);
    else for (let s = this.bucketSecond + 1; s <= second; s++) this.buckets[s % this.buckets.length] = 0;
    this.bucketSecond = Math.max(this.bucketSecond, second);
  }
}

export class TaskCoordinator implements RoundCohort {
  readonly taskId: string;
  /** It folds before journaling, so keys must be deduplicated before `submit`. */
  readonly journalDedups = false;
  private state: State = 'stopped';
  private strategy: (Strategy & DurableStrategy) | null = null;
  private nextClientId = 1;
  private readonly published = new Map<number, PublishedModel>();
  private latest = -1;
  private lastCheckpointVersion = -1;
  /** Journal appends, issued in fold order (the storage assigns seqs in call order). */
  private readonly journal: JournalWriter;
  /**
   * Standalone async tasks: accepted updates are made durable by storing the strategy's state once
   * per group commit, not each delta (null: every update's delta goes to the journal).
   */
  private readonly folded: FoldedCommitter | null;
  /** Where captureState encodes the strategy state for folded commits (grown when too small). */
  private stateScratch = new Uint8Array(0);
  private checkpointChain: Promise<unknown> = Promise.resolve();
  private leaseTimer: NodeJS.Timeout | null = null;
  private tailTimer: NodeJS.Timeout | null = null;
  private tailing = false;
  /** Seq of the last journal entry folded into the strategy. */
  private foldedSeq = 0;
  private recovering: Promise<void> | null = null;
  private readonly listeners = new Set<(event: ServerEvent) => void>();
  private readonly rate = new RateWindow();
  private lastMetricAt = 0;
  private stalenessSum = 0;
  private stalenessCount = 0;
  /** This process's counts since it started: accepted updates, and refusals by reason. */
  readonly counts = { accepted: 0, rejected: {} as Record<string, number> };
  /** Refusals found when folding the journal (tail mode): found again by every replay, so they are
   *  kept here only, not added to the stored counts (see rejections.ts). */
  private readonly foldRefusals: Record<string, number> = {};
  /** Refusals of uploads as they arrive, shared with the other processes through the storage. */
  private readonly rejectionTally: RejectionTally;
  private readonly keepVersions: number;
  private readonly log: (message: string) => void;
  /** Fencing token of the lease this coordinator holds (undefined: the lease has none). */
  private fencingToken: number | undefined;
  // Partial-sum leader state (see the file comment).
  private waterMark = 0;
  private readonly foldedAbove = new Set<number>();
  private readonly firstSeen = new Map<number, number>();
  private toAck: string[] = [];
  private needTakeOver = false;
  private lastSweep = 0;
  private leaderTimer: NodeJS.Timeout | null = null;
  private leading: Promise<void> | null = null;
  // Sync rounds (see the sync section below).
  private readonly isSync: boolean;
  /** User-level DP: every step is checkpointed before its version is published. */
  private readonly isPrivateTask: boolean;
  /** Assignments this process handed out for its current strategy: assignment id → strategy client. */
  private lastKeyPrune = 0;
  private readonly live = new Map<
    string,
    { readonly clientId: number; readonly deadline: number; readonly round: number }
  >();
  /** Recovery: the stored open round, seated once replay reaches it (see seatStoredRound). */
  private storedRound: StoredRound | null = null;
  /** Recovery: the clock of the stored round, for replayed updates of that round. */
  private storedClock: { readonly round: number; readonly openedAt: number } | null = null;
  /** Round-state writes, one at a time; `roundWriteQueued` is the next one, not yet started. */
  private roundWriteChain: Promise<void> = Promise.resolve();
  private roundWriteQueued: Promise<void> | null = null;
  private roundTimer: NodeJS.Timeout | null = null;
  private roundTimerDue = Number.NaN;
  private lapseTimer: NodeJS.Timeout | null = null;
  /** A version stepped outside the journal (timer, dropouts) being checkpointed before it is published. */
  private committing: Promise<void> | null = null;
  /** The most recent journal append issued (seqs follow call order). */
  private lastAppend: Promise<AppendResult> | null = null;
  /** Set by a sync fold that closed earlier rounds and then refused its own update. */
  private closedOutsideJournal = false;

  constructor(
    readonly runtime: TaskRuntime,
    private readonly options: CoordinatorOptions,
  ) {
    this.taskId = runtime.spec.taskId;
    this.keepVersions = options.keepVersions ?? 32;
    this.journal = new JournalWriter(options.storage);
    this.rejectionTally = new RejectionTally(options.storage, this.taskId);
    this.log = options.log ?? (() => {});
    this.isSync = runtime.spec.strategy.kind === 'sync';
    const strategySpec = runtime.spec.strategy;
    this.isPrivateTask = strategySpec.kind !== 'fedasync' && strategySpec.privacy !== undefined;
    // Sync rounds and DP tasks checkpoint on their own schedule (round state, one noised step per
    // checkpoint); the distributed modes fold deltas other processes journal.
    const foldsIntoState =
      options.journalDeltas !== true &&
      options.tail !== true &&
      options.partials === undefined &&
      !this.isSync &&
      !this.isPrivateTask;
    this.folded = foldsIntoState ? new FoldedCommitter(options.storage, () => this.captureState()) : null;
  }

  /**
   * The state a folded commit stores: every update folded so far is in it. Views of the strategy's
   * own arrays, no copies: the storage reads them before `commitFolded` returns.
   */
  private captureState(): Omit<FoldedCommit, 'entries'> | null {
    if (this.state !== 'ready' || this.strategy === null) return null;
    const snapshot = this.strategy.view();
    // Encoded into the same memory every time (the storage copies it before commitFolded returns):
    // no 400 kB allocation, page faults and GC pressure per commit.
    const state = encodeStrategyState(snapshot, undefined, this.stateScratch);
    if (state.buffer !== this.stateScratch.buffer)
      this.stateScratch = new Uint8Array(Math.ceil(state.byteLength * 1.25));
    return {
      taskId: this.taskId,
      version: snapshot.version,
      params: snapshot.params,
      state,
      createdAt: Date.now(),
      ...this.fence,
    };
  }

  /**
   * Non-null once the task stopped for good: one more noised step would exceed the privacy budget
   * (`strategy.privacy.budget`). Read from the strategy's privacy ledger, which the checkpoint
   * carries, so a restart recomputes it; no update is accepted from then on (none could ever be
   * applied), no assignment is handed out, and no further version is published.
   */
  finished(): FinishedTask | null {
    const strategy = this.strategy;
    if (strategy === null || !isPrivate(strategy) || !strategy.wouldExceedBudget()) return null;
    const report = strategy.privacyReport();
    const spec = this.runtime.spec.strategy;
    const budgetEpsilon = spec.kind === 'fedasync' ? undefined : spec.privacy?.budget?.epsilon;
    if (budgetEpsilon === undefined) return null;
    return {
      taskId: this.taskId,
      reason: 'privacy_budget',
      epsilon: report.epsilon,
      delta: report.delta,
      steps: report.steps,
      budgetEpsilon,
    };
  }

  /** The refusal of an update or assignment for a finished task (410 'finished'). */
  private finishedError(finished: FinishedTask): ApiError {
    return new ApiError('finished', describeFinished(finished));
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** The newest version whose every update is durable: what check-ins hand out. */
  get version(): number {
    return this.latest;
  }

  get numParams(): number {
    return this.runtime.initialParams.length;
  }

  subscribe(listener: (event: ServerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: ServerEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** Takes the lease, stores the task definition if new, and recovers the model. */
  async start(): Promise<void> {
    const ttl = this.options.leaseTtlMs ?? 10_000;
    if (this.options.partials !== undefined && !foldsPartials(this.runtime.newStrategy()))
      throw new OrchardError(
        'CONFIG_INVALID',
        `task ${this.taskId}: its strategy cannot fold partial sums (plain FedBuff only)`,
      );
    if (this.isSync && (this.options.partials !== undefined || this.options.tail === true))
      throw new OrchardError(
        'CONFIG_INVALID',
        `task ${this.taskId}: sync rounds need all roles in one process (the round's cohort lives in the coordinator)`,
      );
    if (this.isPrivateTask && (this.options.partials !== undefined || this.options.tail === true))
      throw new OrchardError(
        'CONFIG_INVALID',
        `task ${this.taskId}: DP tasks need all roles in one process (each noised step is checkpointed before it is published)`,
      );
    if ((await this.acquireLease(ttl)) === null)
      throw new ApiError('unavailable', `another coordinator holds the lease of task ${this.taskId}`);
    this.leaseTimer = setInterval(() => void this.renewLease(ttl), Math.max(50, ttl / 3));
    this.leaseTimer.unref();
    const existing = await this.options.storage.getTask(this.taskId);
    if (existing === null)
      await this.options.storage.putTask({
        taskId: this.taskId,
        spec: this.runtime.spec,
        createdAt: Date.now(),
      });
    await this.recover();
    const partials = this.options.partials;
    if (partials !== undefined) {
      this.leaderTimer = setInterval(() => void this.leaderTick(partials), partials.pullIntervalMs ?? 25);
      this.leaderTimer.unref();
    } else if (this.options.tail === true) {
      this.tailTimer = setInterval(() => void this.tail(), this.options.tailIntervalMs ?? 25);
      this.tailTimer.unref();
    }
    if (this.isSync) {
      this.lapseTimer = setInterval(() => this.sweepLapsed(), 1000);
      this.lapseTimer.unref();
    }
  }

  private get leaseKey(): string {
    return `orchard:coordinator:${this.taskId}`;
  }

  /** Acquires or renews the lease: null when another holder owns it, else its fencing token. */
  private async acquireLease(ttl: number): Promise<{ token: number | undefined } | null> {
    const { lease, holderId } = this.options;
    if (!isFencing(lease))
      return (await lease.tryAcquire(this.leaseKey, holderId, ttl)) ? { token: undefined } : null;
    const grant = await lease.acquire(this.leaseKey, holderId, ttl);
    if (grant === null) return null;
    const changed = this.fencingToken !== undefined && grant.fencingToken !== this.fencingToken;
    this.fencingToken = grant.fencingToken;
    // A new token means the lease lapsed in between and someone may have acted: rebuild.
    if (changed && this.state === 'ready') this.deposed('the lease was re-acquired with a new fencing token');
    return { token: grant.fencingToken };
  }

  /** `fencingToken` for writes (absent without a fenced lease). */
  private get fence(): { fencingToken?: number } {
    return this.fencingToken === undefined ? {} : { fencingToken: this.fencingToken };
  }

  /** Stops acting at once (lease gone or storage fenced); the lease renewal decides what follows. */
  private deposed(why: string): void {
    if (this.state === 'closed' || this.state === 'lost_lease') return;
    this.state = 'lost_lease';
    this.log(`task ${this.taskId}: ${why}; stopped acting`);
  }

  private async renewLease(ttl: number): Promise<void> {
    if (this.state === 'closed') return;
    let held = false;
    try {
      held = (await this.acquireLease(ttl)) !== null;
    } catch (error) {
      this.log(`lease renewal failed: ${(error as Error).message}`);
    }
    if (!held && this.state !== 'lost_lease') {
      // Someone else may act now: stop at once, and rebuild from storage if the lease comes back.
      this.state = 'lost_lease';
      this.log(`task ${this.taskId}: lost the coordinator lease`);
    } else if (held && this.state === 'lost_lease') {
      // On failure the state stays 'recovering' until the next renewal retries.
      this.recover().catch((error: unknown) => {
        this.log(`task ${this.taskId}: recovery failed: ${(error as Error).message}`);
        this.state = 'lost_lease';
      });
    }
  }

  /** Loads the latest checkpoint and replays the journal after it. */
  recover(): Promise<void> {
    this.recovering ??= this.doRecover().finally(() => {
      this.recovering = null;
    });
    return this.recovering;
  }

  private async doRecover(): Promise<void> {
    this.state = 'recovering';
    // A partial-leader pass in progress sees the state change and stops; let it finish first.
    await this.leading?.catch(() => {});
    // Appends still in flight must land (or fail) before the journal is read back.
    await this.journal.settled();
    await this.folded?.settled();
    await this.committing?.catch(() => {});
    await this.checkpointChain.catch(() => {});
    await this.roundWriteChain.catch(() => {});
    const storage = this.options.storage;
    // Fence before reading: from now on a deposed holder's appends and checkpoints are refused.
    if (this.fencingToken !== undefined) await storage.fence(this.taskId, this.fencingToken);
    const strategy = this.runtime.newStrategy();
    const checkpoint = await resumePoint(storage, this.taskId);
    this.folded?.reset();
    if (this.options.partials !== undefined) return this.recoverLeader(strategy, checkpoint);
    this.live.clear();
    this.clearRoundTimer();
    this.lastAppend = null;
    let journalSeq = 0;
    this.published.clear();
    if (checkpoint !== null) {
      strategy.restore(decodeStrategyState(checkpoint.state, checkpoint.params, checkpoint.version));
      journalSeq = checkpoint.journalSeq;
      this.lastCheckpointVersion = checkpoint.version;
    } else {
      this.lastCheckpointVersion = -1;
    }
    this.strategy = strategy;
    this.publish(strategy.version, strategy.params, false);
    // Sync: the open round's deadline and cohort, seated when replay reaches that round.
    const storedRound = this.isSync ? await storage.roundState(this.taskId) : null;
    this.storedRound = storedRound === null ? null : parseStoredRound(storedRound.state);
    this.storedClock = null;
    const entries = await storage.journalSince(this.taskId, journalSeq);
    let lastSnapshot: { snapshot: StrategySnapshot; seq: number } | null = null;
    for (const entry of entries) {
      const outcome = this.fold(entry);
      if (outcome.kind === 'rejected' && this.options.tail === true) {
        this.countFoldRefusal(outcome.reason);
        continue;
      }
      if (outcome.kind === 'rejected') {
        // Only accepted updates are journaled and the fold is deterministic, so this means the
        // journal and checkpoint disagree: refuse to serve a model that silently lost an update.
        throw new OrchardError(
          'INVALID_STATE',
          `journal entry ${entry.seq} of task ${this.taskId} no longer applies: ${outcome.message}`,
        );
      }
      if (outcome.stepped) {
        this.publish(outcome.version, strategy.params, false);
        lastSnapshot = { snapshot: strategy.snapshot(), seq: entry.seq };
      }
    }
    this.foldedSeq = entries.at(-1)?.seq ?? journalSeq;
    if (strategy instanceof SyncRounds) this.seatStoredRound(strategy);
    this.storedRound = null;
    this.storedClock = null;
    if (checkpoint === null && lastSnapshot === null)
      lastSnapshot = { snapshot: strategy.snapshot(), seq: journalSeq };
    if (lastSnapshot !== null && lastSnapshot.snapshot.version > this.lastCheckpointVersion) {
      await this.saveCheckpoint(lastSnapshot.snapshot, lastSnapshot.seq);
      // DP: steps replayed here drew new noise; they are served only once checkpointed.
      if (this.isPrivateTask && this.lastCheckpointVersion < lastSnapshot.snapshot.version)
        throw new OrchardError(
          'INVALID_STATE',
          `task ${this.taskId}: the checkpoint of replayed version ${lastSnapshot.snapshot.version} failed`,
        );
    }
    const spent = privacyOf(strategy);
    if (spent !== undefined) this.publish(strategy.version, strategy.params, false, spent);
    this.log(
      `task ${this.taskId}: recovered version ${strategy.version} (checkpoint ${checkpoint?.version ?? 'none'}, ${entries.length} journal entries replayed)`,
    );
    this.state = 'ready';
    this.armRoundTimer();
    this.emit({ type: 'version', data: { taskId: this.taskId, version: this.latest, at: Date.now() } });
    const params = strategy.params;
    const version = this.latest;
    setImmediate(() => void this.recordMetrics(version, params, this.runtime.spec.evalEvery > 0));
  }

  /** Folds one update into the strategy (synchronous: no other update interleaves). */
  private fold(input: Omit<FoldInput, 'idempotencyKey'>): UpdateOutcome {
    const strategy = this.strategy;
    if (strategy === null) throw new Error('coordinator not started');
    const clientId = this.nextClientId++;
    if (
      !(
        Number.isInteger(input.baseVersion) &&
        input.baseVersion >= 0 &&
        input.baseVersion <= strategy.version
      )
    )
      return {
        kind: 'rejected',
        reason: 'unknown_version',
        message: `base version ${input.baseVersion} was never issued (current ${strategy.version})`,
      };
    if (strategy instanceof SyncRounds) return this.foldSync(strategy, clientId, input);
    strategy.resumeAssignment(clientId, input.baseVersion);
    const base = {
      clientId,
      baseVersion: input.baseVersion,
      delta: input.delta,
      numExamples: input.numExamples,
    };
    const update = input.trainLoss === undefined ? base : { ...base, trainLoss: input.trainLoss };
    return strategy.onUpdate(
      input.verifiedFinite === true ? { ...update, verifiedFinite: true } : update,
      Date.now(),
    );
  }

  /**
   * Folds an update that passed the aggregator's checks, journals it and resolves once it is
   * durable. A rejection (stale, wrong version) changes nothing and is returned as is.
   */
  async submit(input: FoldInput): Promise<UpdateResponse | Rejected> {
    if (this.options.tail === true)
      throw new Error('a tailing coordinator folds the journal, not submissions');
    if (this.state !== 'ready' || this.strategy === null)
      throw new ApiError('unavailable', `task ${this.taskId} is ${this.state}; retry shortly`, 1000);
    // Refused before the fold: a finished task's buffer or round never holds an update that no
    // step would ever apply, and nothing is journaled.
    const finished = this.finished();
    if (finished !== null) {
      this.countRejection('finished');
      throw this.finishedError(finished);
    }
    const outcome = this.fold(input);
    if (this.folded !== null) input.releaseDelta?.();
    if (this.closedOutsideJournal) {
      this.closedOutsideJournal = false;
      this.commitClose();
    }
    this.armRoundTimer();
    if (outcome.kind === 'rejected') {
      this.countRejection(outcome.reason);
      return outcome;
    }
    const response: UpdateResponse = {
      accepted: true,
      duplicate: false,
      staleness: outcome.staleness,
      version: outcome.version,
    };
    const strategy = this.strategy;
    const stepped = outcome.stepped
      ? {
          version: outcome.version,
          params: strategy.params,
          snapshot:
            this.isPrivateTask || outcome.version % this.runtime.spec.checkpointEvery === 0
              ? strategy.snapshot()
              : null,
          privacy: privacyOf(strategy),
        }
      : null;
    const append =
      this.folded === null
        ? this.journal.append({ ...journalEntry(this.taskId, input, response), ...this.fence })
        : this.folded.append(foldedEntry(input, response));
    this.lastAppend = append;
    let result: Awaited<typeof append>;
    try {
      result = await append;
    } catch (error) {
      if (isFenced(error)) {
        this.deposed('the storage refused a journal append (fenced: another coordinator took over)');
        throw new ApiError(
          'unavailable',
          `task ${this.taskId} moved to another coordinator; retry shortly`,
          1000,
        );
      }
      this.failed(`journal append failed: ${(error as Error).message}`);
      throw new ApiError('unavailable', 'the update could not be stored; retry shortly', 1000);
    }
    if (result.kind === 'duplicate') {
      // Another process applied this key first: our in-memory fold is one too many.
      this.failed('an idempotency key was applied by another process');
      return { ...(result.response as UpdateResponse), duplicate: true };
    }
    const now = Date.now();
    this.counts.accepted++;
    this.rate.add(now);
    this.stalenessSum += outcome.staleness;
    this.stalenessCount++;
    this.foldedSeq = Math.max(this.foldedSeq, result.seq);
    if (stepped !== null && this.isPrivateTask && stepped.snapshot !== null) {
      // DP: the noised version is released only once its checkpoint is durable (after a crash,
      // replay would draw new noise for a step that was never released, never a second version).
      await this.saveCheckpoint(stepped.snapshot, result.seq);
      if (this.state === 'ready' && this.strategy === strategy) {
        if (this.lastCheckpointVersion >= stepped.version)
          this.publish(stepped.version, stepped.params, true, stepped.privacy);
        else this.failed(`checkpoint of version ${stepped.version} failed`);
      }
    } else if (stepped !== null) {
      this.publish(stepped.version, stepped.params, true, stepped.privacy);
      if (stepped.snapshot !== null) void this.saveCheckpoint(stepped.snapshot, result.seq);
    }
    return response;
  }

  /** Distributed mode: folds journal entries other processes appended since the last fold. */
  private async tail(): Promise<void> {
    if (this.state !== 'ready' || this.tailing || this.strategy === null) return;
    this.tailing = true;
    try {
      const entries = await this.options.storage.journalSince(this.taskId, this.foldedSeq);
      if (this.state !== 'ready') return;
      const strategy = this.strategy;
      for (const entry of entries) {
        if (entry.seq <= this.foldedSeq) continue;
        const outcome = this.fold(entry);
        this.foldedSeq = entry.seq;
        if (outcome.kind === 'rejected') {
          this.log(
            `task ${this.taskId}: journal entry ${entry.seq} refused at fold time: ${outcome.message}`,
          );
          this.countFoldRefusal(outcome.reason);
          continue;
        }
        this.counts.accepted++;
        this.rate.add(Date.now());
        this.stalenessSum += outcome.staleness;
        this.stalenessCount++;
        if (outcome.stepped) {
          // Every entry behind this version is already durable (it was read from the journal).
          this.publish(outcome.version, strategy.params, true);
          if (outcome.version % this.runtime.spec.checkpointEvery === 0)
            void this.saveCheckpoint(strategy.snapshot(), entry.seq);
        }
      }
    } catch (error) {
      if (isFenced(error)) this.deposed('the storage is fenced by another coordinator');
      else this.failed(`reading the journal failed: ${(error as Error).message}`);
    } finally {
      this.tailing = false;
    }
  }

  /** Partial-sum leader: restores the checkpoint; journal entries after it wait for their partials. */
  private async recoverLeader(
    strategy: Strategy & DurableStrategy,
    checkpoint: Checkpoint | null,
  ): Promise<void> {
    this.foldedAbove.clear();
    this.firstSeen.clear();
    this.toAck = [];
    if (checkpoint !== null) {
      strategy.restore(decodeStrategyState(checkpoint.state, checkpoint.params, checkpoint.version));
      this.waterMark = checkpoint.journalSeq;
      for (const seq of decodeFoldedSeqs(checkpoint.state))
        if (seq > this.waterMark) this.foldedAbove.add(seq);
      this.lastCheckpointVersion = checkpoint.version;
    } else {
      this.waterMark = 0;
      this.lastCheckpointVersion = -1;
    }
    this.strategy = strategy;
    this.publish(strategy.version, strategy.params, false);
    if (checkpoint === null && (await this.writeLeaderCheckpoint()) === null)
      throw new OrchardError(
        'INVALID_STATE',
        `task ${this.taskId}: the first checkpoint could not be written`,
      );
    if (this.state !== 'recovering')
      throw new OrchardError('INVALID_STATE', `task ${this.taskId}: deposed while recovering`);
    // Partials an earlier leader pulled but never acknowledged come back at the next tick, and the
    // first sweep starts the orphan clock of every unfolded journal entry.
    this.needTakeOver = true;
    this.lastSweep = 0;
    this.log(
      `task ${this.taskId}: leading partial sums from version ${strategy.version} (journal folded through seq ${this.waterMark}, +${this.foldedAbove.size})`,
    );
    this.state = 'ready';
    this.emit({ type: 'version', data: { taskId: this.taskId, version: this.latest, at: Date.now() } });
  }

  private leaderTick(options: PartialLeaderOptions): void {
    if (this.state !== 'ready' || this.leading !== null) return;
    this.leading = this.lead(options)
      .catch((error: unknown) => {
        if (isFenced(error)) this.deposed('the storage is fenced by another coordinator');
        else if (error instanceof Error && 'code' in error && error.code === 'STATE_LOST') {
          // The queued partials are gone; their updates are in the journal and the sweep folds them.
          this.log(`task ${this.taskId}: ${error.message}`);
          this.lastSweep = 0;
        } else this.log(`task ${this.taskId}: partial exchange: ${(error as Error).message}`);
      })
      .finally(() => {
        this.leading = null;
      });
  }

  private async lead(options: PartialLeaderOptions): Promise<void> {
    const { exchange } = options;
    if (this.needTakeOver) {
      const taken = await exchange.takeOver(this.taskId, this.options.holderId);
      this.needTakeOver = false;
      await this.applyDeliveries(taken);
    }
    const now = Date.now();
    if (now - this.lastSweep >= (options.sweepIntervalMs ?? 500)) {
      this.lastSweep = now;
      await this.sweep(options.orphanAfterMs ?? 3000);
    }
    if (this.state !== 'ready') return;
    await this.applyDeliveries(await exchange.pull(this.taskId, this.options.holderId, 64, 0));
  }

  private isFolded(seq: number): boolean {
    return seq <= this.waterMark || this.foldedAbove.has(seq);
  }

  private markFolded(seq: number): void {
    this.foldedAbove.add(seq);
    this.firstSeen.delete(seq);
  }

  private leaderStrategy(): Strategy & DurableStrategy & PartialFolding {
    const strategy = this.strategy;
    if (strategy === null || !foldsPartials(strategy)) throw new Error('partial leader not started');
    return strategy;
  }

  /** Folds each delivered partial once; see the file comment for the rules. */
  private async applyDeliveries(delivered: readonly DeliveredPartial[]): Promise<void> {
    for (const { deliveryId, partial } of delivered) {
      if (this.state !== 'ready') return;
      const fresh = partial.seqs.filter((seq) => !this.isFolded(seq));
      const whole =
        fresh.length === partial.seqs.length &&
        fresh.length === partial.count &&
        new Set(fresh).size === fresh.length &&
        partial.taskId === this.taskId;
      if (fresh.length > 0 && whole) {
        let stepped: boolean;
        try {
          stepped = this.leaderStrategy().foldPartial({
            sum: partial.sum,
            examples: partial.weight,
            count: partial.count,
          }).stepped;
        } catch (error) {
          this.log(
            `task ${this.taskId}: partial ${partial.id} refused (${(error as Error).message}); folding its updates from the journal`,
          );
          await this.foldFromJournal(fresh);
          this.toAck.push(deliveryId);
          continue;
        }
        for (const seq of fresh) this.markFolded(seq);
        this.countFolded(partial.count);
        this.toAck.push(deliveryId);
        if (stepped) await this.commitStep();
      } else {
        // Some of it is folded already (a re-delivery, or the sweep got there first): the rest
        // comes from the journal, so nothing is counted twice.
        if (fresh.length > 0) await this.foldFromJournal(fresh);
        this.toAck.push(deliveryId);
      }
    }
  }

  private countFolded(count: number): void {
    this.counts.accepted += count;
    const now = Date.now();
    for (let i = 0; i < count; i++) this.rate.add(now);
  }

  private async foldFromJournal(seqs: readonly number[]): Promise<void> {
    const wanted = new Set(seqs);
    const entries = await this.options.storage.journalSince(this.taskId, Math.min(...seqs) - 1);
    for (const entry of entries) {
      if (this.state !== 'ready') return;
      if (!wanted.has(entry.seq) || this.isFolded(entry.seq)) continue;
      if (this.foldEntry(entry)) await this.commitStep();
    }
  }

  /** One journal entry as a partial of one, weighted by the staleness its aggregator answered. */
  private foldEntry(entry: JournalEntry): boolean {
    const spec = this.runtime.spec.strategy;
    const answered = (entry.response as Partial<UpdateResponse> | null)?.staleness;
    const staleness =
      typeof answered === 'number' && Number.isInteger(answered) && answered >= 0 ? answered : 0;
    const w = 'staleness' in spec ? stalenessWeight(spec.staleness)(staleness) : 1;
    const factor = entry.numExamples * w;
    const sum = new Float32Array(entry.delta.length);
    for (let i = 0; i < sum.length; i++) sum[i] = factor * (entry.delta[i] as number);
    const { stepped } = this.leaderStrategy().foldPartial({ sum, examples: entry.numExamples, count: 1 });
    this.markFolded(entry.seq);
    this.countFolded(1);
    this.stalenessSum += staleness;
    this.stalenessCount++;
    return stepped;
  }

  /**
   * Scans the journal above the water mark: entries unfolded for `orphanAfterMs` (since this leader
   * first saw them) are folded from the journal; then the water mark moves over everything folded
   * (and over seqs that do not exist: entries become visible in seq order).
   */
  private async sweep(orphanAfterMs: number): Promise<void> {
    const entries = await this.options.storage.journalSince(this.taskId, this.waterMark);
    let minUnfolded = Number.POSITIVE_INFINITY;
    for (const entry of entries) {
      if (this.state !== 'ready') return;
      if (this.isFolded(entry.seq)) continue;
      const now = Date.now();
      const seen = this.firstSeen.get(entry.seq);
      if (seen === undefined || now - seen < orphanAfterMs) {
        if (seen === undefined) this.firstSeen.set(entry.seq, now);
        minUnfolded = Math.min(minUnfolded, entry.seq);
        continue;
      }
      this.log(
        `task ${this.taskId}: journal entry ${entry.seq} came in no partial; folding it from the journal`,
      );
      if (this.foldEntry(entry)) await this.commitStep();
    }
    const maxVisible = entries.at(-1)?.seq ?? this.waterMark;
    this.raiseWaterMark(Math.min(minUnfolded - 1, maxVisible));
  }

  private raiseWaterMark(to: number): void {
    while (this.foldedAbove.has(this.waterMark + 1)) this.foldedAbove.delete(++this.waterMark);
    if (to <= this.waterMark) return;
    this.waterMark = to;
    for (const seq of this.foldedAbove) if (seq <= to) this.foldedAbove.delete(seq);
    for (const seq of this.firstSeen.keys()) if (seq <= to) this.firstSeen.delete(seq);
  }

  /** A step: checkpoint it (with the folded seqs), then publish it and acknowledge the partials. */
  private async commitStep(): Promise<void> {
    const acks = this.toAck;
    this.toAck = [];
    const snapshot = await this.writeLeaderCheckpoint();
    if (snapshot === null) {
      this.toAck = acks.concat(this.toAck);
      return;
    }
    this.publish(snapshot.version, snapshot.params, true);
    await this.options.partials?.exchange.ack(this.taskId, acks).catch((error: unknown) => {
      // Unacknowledged partials come back and are skipped as already folded.
      this.log(`task ${this.taskId}: acknowledging partials failed: ${(error as Error).message}`);
    });
  }

  private async writeLeaderCheckpoint(): Promise<StrategySnapshot | null> {
    this.raiseWaterMark(this.waterMark);
    const snapshot = this.leaderStrategy().snapshot();
    const checkpoint: Checkpoint = {
      taskId: this.taskId,
      version: snapshot.version,
      params: snapshot.params,
      state: encodeStrategyState(snapshot, [...this.foldedAbove]),
      journalSeq: this.waterMark,
      createdAt: Date.now(),
      ...this.fence,
    };
    try {
      await this.checkpointChain.catch(() => {});
      await this.options.storage.saveCheckpoint(checkpoint);
      this.lastCheckpointVersion = snapshot.version;
      return snapshot;
    } catch (error) {
      if (isFenced(error)) this.deposed(`checkpoint ${snapshot.version} refused (fenced)`);
      else if (this.state !== 'ready')
        this.log(`task ${this.taskId}: checkpoint ${snapshot.version} failed: ${(error as Error).message}`);
      else this.failed(`checkpoint ${snapshot.version} failed: ${(error as Error).message}`);
      return null;
    }
  }

  // ---- Sync rounds -------------------------------------------------------------------------
  //
  // The selector admits devices into the current round through `join` (the strategy's selection
  // target), the assignment names the round, and each update folds into the round it names. Round
  // closes driven by updates are reproduced by replaying the journal; a round that closes on its
  // deadline (or because its last devices lapsed) is checkpointed before its version is published.
  // Replay also closes rounds on its own: an update of round r + 1 means round r had closed, with
  // exactly the round-r updates before it in the journal, so the close (step or restart) is the same.
  // The strategy's clock is seconds (roundTimeout is in seconds), so `now` is Date.now() / 1000.

  /**
   * RoundCohort: joins the current round (see selector.ts). Resolves once the round's deadline and
   * cohort, this device included, are stored, so a restart keeps both.
   */
  async join(
    now: number,
    deadline: number,
    sign: (version: number, round: number) => string,
  ): Promise<{ readonly assignmentId: string; readonly version: number; readonly round: number } | null> {
    const strategy = this.strategy;
    if (!(strategy instanceof SyncRounds) || this.state !== 'ready' || this.committing !== null) return null;
    if (this.finished() !== null) return null;
    // A version not yet published (its updates or checkpoint are still being stored) is not handed out.
    if (strategy.version !== this.latest) return null;
    const t = now / 1000;
    if (strategy.demand(t, 0, Number.POSITIVE_INFINITY) <= 0) return null;
    const clientId = this.nextClientId++;
    const assignment = strategy.assign(clientId, t);
    const round = assignment.round ?? strategy.round;
    const assignmentId = sign(assignment.version, round);
    this.live.set(assignmentId, { clientId, deadline, round });
    this.armRoundTimer();
    try {
      await this.persistRound();
    } catch (error) {
      this.log(`task ${this.taskId}: storing round ${round} failed: ${(error as Error).message}`);
      this.leave(assignmentId);
      throw new ApiError('unavailable', 'the round could not be stored; retry shortly', 1000);
    }
    return { assignmentId, version: assignment.version, round };
  }

  /**
   * Stores the current round (deadline and outstanding cohort). Writes run one at a time, each
   * taking the state when it starts, so concurrent joins share a write.
   */
  private persistRound(): Promise<void> {
    if (this.roundWriteQueued !== null) return this.roundWriteQueued;
    const write = this.roundWriteChain
      .catch(() => {})
      .then(() => {
        this.roundWriteQueued = null;
        return this.writeRound();
      });
    this.roundWriteQueued = write;
    this.roundWriteChain = write;
    return write;
  }

  private async writeRound(): Promise<void> {
    const strategy = this.strategy;
    if (!(strategy instanceof SyncRounds) || this.state !== 'ready') return;
    const round = strategy.round;
    const due = strategy.nextDeadline();
    const cohort = [];
    for (const [assignmentId, a] of this.live)
      if (a.round === round) cohort.push({ assignmentId, deadline: a.deadline });
    const state: StoredRound = {
      round,
      version: strategy.version,
      deadline: Number.isFinite(due) ? due : null,
      cohort,
      departed: strategy.departedThisRound,
    };
    try {
      await this.options.storage.putRoundState({
        taskId: this.taskId,
        state,
        updatedAt: Date.now(),
        ...this.fence,
      });
    } catch (error) {
      if (isFenced(error)) this.deposed('the storage refused a round-state write (fenced)');
      throw error;
    }
  }

  /**
   * Recovery: seats the stored round's devices once replay reached that round (before any of its
   * updates is folded), so their uploads fold as the same strategy clients and the round's clock
   * runs from its original opening. A stored round that replay passed (it closed) is dropped.
   */
  private seatStoredRound(strategy: SyncRounds): void {
    const stored = this.storedRound;
    if (stored === null || strategy.round < stored.round) return;
    this.storedRound = null;
    if (strategy.round !== stored.round || strategy.version !== stored.version) return;
    const spec = this.runtime.spec.strategy;
    const timeout = spec.kind === 'sync' ? spec.roundTimeout : 0;
    // The strategy opens a round's clock at its first device; the deadline is opening + timeout.
    const openedAt = stored.deadline === null ? undefined : stored.deadline - timeout;
    if (openedAt !== undefined) this.storedClock = { round: stored.round, openedAt };
    for (const m of stored.cohort) {
      if (this.live.has(m.assignmentId)) continue;
      const clientId = this.nextClientId++;
      strategy.resumeAssignment(clientId, stored.version, stored.round, openedAt);
      this.live.set(m.assignmentId, { clientId, deadline: m.deadline, round: stored.round });
    }
    // Devices that left before the crash keep their slots, as they did before it.
    strategy.resumeDeparted(stored.departed, openedAt, Date.now() / 1000);
  }

  /** RoundCohort: the device will not train (it counts as a dropout of its round). */
  leave(assignmentId: string): void {
    const live = this.live.get(assignmentId);
    const strategy = this.strategy;
    if (live === undefined || !(strategy instanceof SyncRounds)) return;
    this.live.delete(assignmentId);
    this.dropOut(strategy, [live.clientId]);
    this.persistRound().catch(() => {});
  }

  /** The current round (sync tasks; null otherwise). */
  get round(): number | null {
    return this.strategy instanceof SyncRounds ? this.strategy.round : null;
  }

  /** The current round's deadline (ms since the epoch; sync tasks, null while it has not opened). */
  roundDeadline(): number | null {
    const due = this.strategy instanceof SyncRounds ? this.strategy.nextDeadline() : Number.NaN;
    return Number.isFinite(due) ? due * 1000 : null;
  }

  private foldSync(
    strategy: SyncRounds,
    freshId: number,
    input: Omit<FoldInput, 'idempotencyKey'>,
  ): UpdateOutcome {
    const now = Date.now() / 1000;
    const round = assignmentRound(input.assignmentId);
    if (round === undefined)
      return { kind: 'rejected', reason: 'not_assigned', message: 'the assignment names no round' };
    const before = strategy.version;
    while (strategy.round < round) strategy.endRound();
    if (this.state === 'recovering') this.seatStoredRound(strategy);
    const advanced = strategy.version > before;
    let clientId: number;
    const live = this.live.get(input.assignmentId);
    if (live !== undefined) {
      clientId = live.clientId;
      this.live.delete(input.assignmentId);
    } else if (round === strategy.round && input.baseVersion !== strategy.version) {
      this.closedOutsideJournal ||= advanced;
      return {
        kind: 'rejected',
        reason: 'wrong_round',
        message: `round ${round} restarted at version ${strategy.version}, the update trained version ${input.baseVersion}`,
      };
    } else {
      clientId = freshId;
      // Replaying the stored round: its clock opened before the crash, not now.
      const clock = this.storedClock;
      const opened = clock !== null && clock.round === round ? clock.openedAt : now;
      strategy.resumeAssignment(clientId, input.baseVersion, round, opened);
    }
    const base = {
      clientId,
      baseVersion: input.baseVersion,
      delta: input.delta,
      numExamples: input.numExamples,
    };
    const update = input.trainLoss === undefined ? base : { ...base, trainLoss: input.trainLoss };
    const outcome = strategy.onUpdate(
      input.verifiedFinite === true ? { ...update, verifiedFinite: true } : update,
      now,
    );
    if (outcome.kind === 'rejected') {
      this.closedOutsideJournal ||= advanced;
      return outcome;
    }
    return advanced && !outcome.stepped ? { ...outcome, stepped: true } : outcome;
  }

  /** Strategy clients that will never report; a round they leave without prospects closes. */
  private dropOut(strategy: SyncRounds, clientIds: readonly number[]): void {
    const before = strategy.version;
    const now = Date.now() / 1000;
    for (const id of clientIds) strategy.onDropout(id, now);
    if (strategy.version > before) this.commitClose();
    this.armRoundTimer();
  }

  /** Assignments past their deadline count as dropouts (the aggregator refuses their uploads). */
  private sweepLapsed(): void {
    const strategy = this.strategy;
    if (!(strategy instanceof SyncRounds) || this.state !== 'ready' || this.committing !== null) return;
    const now = Date.now();
    const lapsed: number[] = [];
    for (const [id, a] of this.live)
      if (a.deadline < now) {
        this.live.delete(id);
        lapsed.push(a.clientId);
      }
    if (lapsed.length > 0) {
      this.dropOut(strategy, lapsed);
      this.persistRound().catch(() => {});
    }
  }

  private clearRoundTimer(): void {
    if (this.roundTimer !== null) clearTimeout(this.roundTimer);
    this.roundTimer = null;
    this.roundTimerDue = Number.NaN;
  }

  /** (Re)arms the timer for the round's deadline; none while the round has not opened. */
  private armRoundTimer(): void {
    const strategy = this.strategy;
    const due =
      strategy instanceof SyncRounds && this.state === 'ready'
        ? strategy.nextDeadline() * 1000
        : Number.POSITIVE_INFINITY;
    if (!Number.isFinite(due)) {
      this.clearRoundTimer();
      return;
    }
    if (this.roundTimer !== null && this.roundTimerDue === due) return;
    this.clearRoundTimer();
    this.roundTimerDue = due;
    this.roundTimer = setTimeout(() => this.onRoundTimer(), Math.max(0, due - Date.now()));
    this.roundTimer.unref();
  }

  private onRoundTimer(): void {
    this.roundTimer = null;
    this.roundTimerDue = Number.NaN;
    const strategy = this.strategy;
    if (!(strategy instanceof SyncRounds) || this.state === 'closed') return;
    if (this.state !== 'ready' || this.committing !== null) {
      // Recovering or committing: look again shortly (recovery re-arms the timer itself).
      this.roundTimer = setTimeout(() => this.onRoundTimer(), 100);
      this.roundTimer.unref();
      return;
    }
    const before = strategy.version;
    const outcome = strategy.onTimer(Date.now() / 1000);
    if (outcome.version > before) this.commitClose();
    this.armRoundTimer();
  }

  /**
   * A version the journal alone does not reproduce (a round closed on its deadline or by dropouts):
   * checkpoint it, covering every journal entry folded so far, and publish it only once that is
   * durable. On failure the coordinator rebuilds from storage (the version was never handed out).
   */
  private commitClose(): void {
    const strategy = this.strategy;
    if (strategy === null) return;
    const snapshot = strategy.snapshot();
    const privacy = privacyOf(strategy);
    const lastAppend = this.lastAppend;
    const commit = async () => {
      let seq = this.foldedSeq;
      if (lastAppend !== null) {
        // Entries folded before the close all have seqs up to this append's (call order).
        const result = await lastAppend.catch(() => null);
        // A failed or duplicate append already sent the coordinator into recovery.
        if (result === null || result.kind !== 'appended') return;
        seq = Math.max(seq, result.seq);
      }
      if (this.state !== 'ready' || this.strategy !== strategy) return;
      await this.saveCheckpoint(snapshot, seq);
      if (this.state !== 'ready' || this.strategy !== strategy) return;
      if (this.lastCheckpointVersion < snapshot.version) {
        this.failed(`checkpoint of version ${snapshot.version} failed`);
        return;
      }
      this.publish(snapshot.version, snapshot.params, true, privacy);
    };
    const running: Promise<void> = commit().finally(() => {
      if (this.committing === running) this.committing = null;
    });
    this.committing = running;
  }

  /** An upload refused as it arrived (nothing journaled). */
  countRejection(reason: string): void {
    this.counts.rejected[reason] = (this.counts.rejected[reason] ?? 0) + 1;
    this.rejectionTally.count(reason);
  }

  private countFoldRefusal(reason: string): void {
    this.counts.rejected[reason] = (this.counts.rejected[reason] ?? 0) + 1;
    this.foldRefusals[reason] = (this.foldRefusals[reason] ?? 0) + 1;
  }

  /** Refused uploads by reason over every process serving the task (the stored counts, this
   *  process's pending ones) plus the journal entries this coordinator refused at fold time. */
  async rejectedTotals(): Promise<Record<string, number>> {
    return mergeCounts(await this.rejectionTally.totals(), this.foldRefusals);
  }

  private failed(why: string): void {
    if (this.state !== 'ready') return;
    this.log(`task ${this.taskId}: ${why}; rebuilding from storage`);
    this.state = 'recovering';
    void this.recover().catch((error: unknown) => {
      this.log(`task ${this.taskId}: recovery failed: ${(error as Error).message}`);
      this.state = 'stopped';
    });
  }

  /**
   * Forgets idempotency keys whose assignment lapsed more than `keyRetentionMs` ago, at most every
   * retention/10 (between 1 s and 1 min, so each delete stays small); runs after checkpoints, so it
   * needs no timer of its own. A failure is logged and retried next time: a key kept longer is harmless.
   */
  private async pruneKeys(): Promise<void> {
    const retention = this.runtime.spec.keyRetentionMs;
    const now = Date.now();
    if (now - this.lastKeyPrune < Math.min(60_000, Math.max(1000, retention / 10))) return;
    this.lastKeyPrune = now;
    try {
      const gone = await this.options.storage.pruneIdempotencyKeys(this.taskId, now - retention);
      if (gone > 0) this.log(`task ${this.taskId}: forgot ${gone} idempotency keys of lapsed assignments`);
    } catch (error) {
      this.log(`task ${this.taskId}: pruning idempotency keys failed: ${(error as Error).message}`);
    }
  }

  private saveCheckpoint(snapshot: StrategySnapshot, journalSeq: number): Promise<void> {
    const checkpoint: Checkpoint = {
      taskId: this.taskId,
      version: snapshot.version,
      params: snapshot.params,
      state: encodeStrategyState(snapshot),
      journalSeq,
      createdAt: Date.now(),
      ...this.fence,
    };
    const save = this.checkpointChain.then(async () => {
      if (checkpoint.version <= this.lastCheckpointVersion) return;
      await this.options.storage.saveCheckpoint(checkpoint);
      this.lastCheckpointVersion = checkpoint.version;
      void this.pruneKeys();
    });
    this.checkpointChain = save.catch((error: unknown) => {
      if (isFenced(error)) this.deposed(`checkpoint ${checkpoint.version} refused (fenced)`);
      this.log(`task ${this.taskId}: checkpoint ${checkpoint.version} failed: ${(error as Error).message}`);
    });
    return this.checkpointChain as Promise<void>;
  }

  private publish(version: number, params: Float32Array, live: boolean, privacy?: PrivacySpent): void {
    this.published.set(version, privacy === undefined ? { version, params } : { version, params, privacy });
    if (version > this.latest || !live) this.latest = version;
    for (const v of this.published.keys()) if (v <= this.latest - this.keepVersions) this.published.delete(v);
    if (!live) return;
    const at = Date.now();
    this.emit({ type: 'version', data: { taskId: this.taskId, version, at } });
    const evalEvery = this.runtime.spec.evalEvery;
    const evalNow = evalEvery > 0 && version % evalEvery === 0;
    // The version a budget-finished task ends on always gets its record (it says why it stopped).
    if (evalNow || at - this.lastMetricAt >= 1000 || this.finished() !== null) {
      this.lastMetricAt = at;
      setImmediate(() => void this.recordMetrics(version, params, evalNow));
    }
  }

  /** Metrics of one version: accuracy and loss on the held-out set (when due), rates, staleness. */
  private async recordMetrics(version: number, params: Float32Array, withEval: boolean): Promise<void> {
    try {
      const values: Record<string, unknown> = {
        updatesPerSecond: this.rate.perSecond(Date.now()),
        staleness: this.stalenessCount === 0 ? 0 : this.stalenessSum / this.stalenessCount,
        accepted: this.counts.accepted,
        rejected: await this.rejectedTotals(),
        inFlight: this.options.inFlight ? await this.options.inFlight() : 0,
      };
      this.stalenessSum = 0;
      this.stalenessCount = 0;
      const privacy = this.published.get(version)?.privacy;
      if (privacy !== undefined) {
        values.epsilon = privacy.epsilon;
        values.delta = privacy.delta;
        values.privacySteps = privacy.steps;
      }
      const finished = this.finished();
      // Only once the final version is the one reported (its step is what spent the budget).
      if (finished !== null && finished.steps === privacy?.steps) {
        values.finished = finished.reason;
        values.budgetEpsilon = finished.budgetEpsilon;
      }
      const test = withEval ? this.runtime.testSet() : null;
      if (test !== null) {
        const evaluation = evaluate(this.runtime.model, params, test, this.runtime.spec.evalSubset);
        values.accuracy = evaluation.accuracy;
        values.loss = evaluation.loss;
      }
      const metric: MetricRecord = { taskId: this.taskId, version, at: Date.now(), values };
      if (this.state === 'closed') return;
      await this.options.storage.appendMetric(metric);
      this.emit({ type: 'metrics', data: metric });
    } catch (error) {
      this.log(`task ${this.taskId}: metrics for version ${version} failed: ${(error as Error).message}`);
    }
  }

  /** The model frame of a published version (null: unknown or no longer kept). */
  modelFrame(version: number): Uint8Array | null {
    const model = this.published.get(version);
    if (model === undefined) return null;
    model.frame ??= encodeFrame(FRAME_KIND_MODEL, { taskId: this.taskId, version }, model.params);
    return model.frame;
  }

  /** The gzipped model frame when gzip saves at least 10%, else null. Computed once per version. */
  modelFrameGzip(version: number): Promise<Uint8Array | null> {
    const model = this.published.get(version);
    const frame = this.modelFrame(version);
    if (model === undefined || frame === null) return Promise.resolve(null);
    model.gzipped ??= new Promise((resolve) => {
      gzip(frame, { level: 6 }, (error, out) => {
        resolve(error === null && out.length < frame.length * 0.9 ? out : null);
      });
    });
    return model.gzipped;
  }

  /** DP tasks: the (ε, δ) spent by the newest published version's steps (null without DP). */
  privacy(): PrivacySpent | null {
    return this.published.get(this.latest)?.privacy ?? null;
  }

  /** Current global parameters (the newest published version). */
  params(): Float32Array | null {
    return this.published.get(this.latest)?.params ?? null;
  }

  async close(): Promise<void> {
    if (this.leaseTimer !== null) clearInterval(this.leaseTimer);
    if (this.tailTimer !== null) clearInterval(this.tailTimer);
    if (this.leaderTimer !== null) clearInterval(this.leaderTimer);
    if (this.lapseTimer !== null) clearInterval(this.lapseTimer);
    this.clearRoundTimer();
    await this.leading?.catch(() => {});
    await this.committing?.catch(() => {});
    await this.journal.settled();
    await this.folded?.settled();
    await this.checkpointChain.catch(() => {});
    await this.roundWriteChain.catch(() => {});
    await this.rejectionTally.close();
    this.state = 'closed';
    this.listeners.clear();
    await this.options.lease.release(this.leaseKey, this.options.holderId).catch(() => {});
  }
}
