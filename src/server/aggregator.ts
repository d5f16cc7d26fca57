/**
 * Aggregator role: receives an update frame and runs every check that needs no model state
 * (authenticated device, genuine unexpired assignment for this device and task, frame and header
 * shape, parameter count, finite values, norm bound), deduplicates on the assignment (an
 * assignment is applied at most once, ever), then hands it to the coordinator, which folds it into
 * the strategy and resolves only once it is journaled durably. Rejections change nothing.
 */
import { sumOfSquaresInMemory } from '../core/sumsq.ts';
import { sumOfSquares } from '../core/vec.ts';
import { accumulate } from '../fl/aggregate.ts';
import { stalenessWeight } from '../fl/staleness.ts';
import { arenaOf } from '../fl/wasm.ts';
import type { AdmissionCounter } from './admission.ts';
import type { AssignmentSigner } from './assignment.ts';
import { presummedSquares } from './bodies.ts';
import type { FoldInput, Rejected } from './coordinator.ts';
import { ApiError } from './errors.ts';
import { journalEntry } from './journal.ts';
import {
  decodeFrame,
  describeFinished,
  type FinishedTask,
  FRAME_KIND_UPDATE,
  FrameError,
  type UpdateHeader,
  type UpdateResponse,
} from './protocol.ts';
import { RejectionTally } from './rejections.ts';
import type { PartialExchange } from './scaleout/partials.ts';
import type { Storage } from './storage/types.ts';
import type { TaskSpec } from './task.ts';

/** What the aggregator hands a validated update to. */
export interface AggregationTarget {
  readonly numParams: number;
  readonly runtime: { readonly spec: TaskSpec };
  countRejection(reason: string): void;
  /** Why the task stopped for good (its privacy budget is spent); null while it runs or not known here. */
  finished?(): FinishedTask | null;
  /**
   * True when `submit` itself detects an already-applied key (it journals before anything else
   * changes), so the aggregator need not look the key up first.
   */
  readonly journalDedups: boolean;
  /** Resolves once the update is durable (or refused without any state change). */
  submit(input: FoldInput): Promise<UpdateResponse | Rejected>;
}

/**
 * An aggregator in its own process (distributed mode): it journals validated updates and answers;
 * the coordinator holding the task's lease folds the journal in seq order (see
 * TaskCoordinator.startTailing). Staleness is judged against the newest version this process
 * knows (from the checkpoints), so the answer's `version`/`staleness` are that estimate.
 */
export class JournalTarget implements AggregationTarget {
  readonly numParams: number;
  readonly journalDedups = true;
  private readonly rejections: RejectionTally;
  constructor(
    readonly runtime: { readonly spec: TaskSpec; readonly initialParams: Float32Array },
    private readonly storage: Storage,
    private readonly version: () => number | null,
  ) {
    this.numParams = runtime.initialParams.length;
    this.rejections = new RejectionTally(storage, runtime.spec.taskId);
  }

  /** Added to the task's stored counts, which the coordinator's status and metrics show. */
  countRejection(reason: string): void {
    this.rejections.count(reason);
  }

  /** Adds the refusals not stored yet. */
  close(): Promise<void> {
    return this.rejections.close();
  }

  async submit(input: FoldInput): Promise<UpdateResponse | Rejected> {
    const judged = judgeStaleness(this.runtime.spec, this.version(), input.baseVersion);
    if ('kind' in judged) return judged;
    const result = await journalAccepted(this.storage, this.runtime.spec.taskId, input, judged.response);
    return result.kind === 'duplicate'
      ? { ...(result.response as UpdateResponse), duplicate: true }
      : judged.response;
  }
}

/**
 * The answer for an update trained on `baseVersion`, judged against `version` (the newest this
 * process knows), and its staleness weight; or the stale rejection (past maxStaleness or weight 0).
 */
function judgeStaleness(
  spec: TaskSpec,
  version: number | null,
  baseVersion: number,
  weightOf: (staleness: number) => number = () => 1,
): { readonly response: UpdateResponse; readonly weight: number } | Rejected {
  if (version === null) throw new ApiError('unavailable', 'no model version known yet; retry shortly', 1000);
  const strategy = spec.strategy;
  const staleness = Math.max(0, version - baseVersion);
  const maxStaleness = 'maxStaleness' in strategy ? strategy.maxStaleness : Number.MAX_SAFE_INTEGER;
  const weight = staleness > maxStaleness ? 0 : weightOf(staleness);
  if (!(weight > 0))
    return {
      kind: 'rejected',
      reason: 'stale',
      message: `staleness ${staleness} exceeds maxStaleness ${maxStaleness}`,
    };
  return { response: { accepted: true, duplicate: false, staleness, version }, weight };
}

/**
 * An aggregator process that sums what it accepts (distributed mode with a partial exchange): each
 * update is journaled before the answer (durability), weighted n·w(s) with s = the newest version
 * this process knows − the update's base version (the staleness it answers, stored in the journal
 * entry), and added to the current partial; the partial is pushed to the exchange `flushMs` after
 * its first update, or at once when it covers `maxCount` updates. The leader folds partials
 * (TaskCoordinator `partials`). A partial whose push fails is not retried: its updates are in the
 * journal, and the leader folds updates no partial brought from there.
 */
export class PartialTarget implements AggregationTarget {
  readonly numParams: number;
  readonly journalDedups = true;
  private readonly weight: (staleness: number) => number;
  private batch: { sum: Float32Array; examples: number; keys: string[]; seqs: number[] } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private counter = 0;
  private readonly pushes = new Set<Promise<void>>();
  private readonly flushMs: number;
  private readonly maxCount: number;

  constructor(
    readonly runtime: { readonly spec: TaskSpec; readonly initialParams: Float32Array },
    private readonly storage: Storage,
    private readonly version: () => number | null,
    private readonly exchange: PartialExchange,
    private readonly aggregatorId: string,
    options: {
      readonly flushMs?: number;
      readonly maxCount?: number;
      readonly log?: (m: string) => void;
    } = {},
  ) {
    this.numParams = runtime.initialParams.length;
    const spec = runtime.spec.strategy;
    this.weight = 'staleness' in spec ? stalenessWeight(spec.staleness) : () => 1;
    this.flushMs = options.flushMs ?? 20;
    this.maxCount = options.maxCount ?? ('bufferSize' in spec ? spec.bufferSize : 1);
    this.log = options.log ?? (() => {});
    this.rejections = new RejectionTally(storage, runtime.spec.taskId);
  }
  private readonly log: (message: string) => void;

  private readonly rejections: RejectionTally;

  /** Added to the task's stored counts, which the leader's status and metrics show. */
  countRejection(reason: string): void {
    this.rejections.count(reason);
  }

  async submit(input: FoldInput): Promise<UpdateResponse | Rejected> {
    const judged = judgeStaleness(this.runtime.spec, this.version(), input.baseVersion, this.weight);
    if ('kind' in judged) return judged;
    const { response, weight } = judged;
    const result = await journalAccepted(this.storage, this.runtime.spec.taskId, input, response);
    if (result.kind === 'duplicate') return { ...(result.response as UpdateResponse), duplicate: true };
    this.batch ??= { sum: new Float32Array(this.numParams), examples: 0, keys: [], seqs: [] };
    accumulate(this.batch.sum, input.numExamples * weight, input.delta);
    this.batch.examples += input.numExamples;
    this.batch.keys.push(input.idempotencyKey);
    this.batch.seqs.push(result.seq);
    if (this.batch.seqs.length >= this.maxCount) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      this.timer.unref();
    }
    return response;
  }

  /** Pushes the current partial (if any). */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.batch;
    this.batch = null;
    if (batch === null) return;
    const id = `${this.aggregatorId}:${this.counter++}`;
    const push = this.exchange
      .push({
        id,
        taskId: this.runtime.spec.taskId,
        aggregatorId: this.aggregatorId,
        sum: batch.sum,
        weight: batch.examples,
        count: batch.seqs.length,
        keys: batch.keys,
        seqs: batch.seqs,
      })
      .catch((error: unknown) => {
        this.log(
          `partial ${id} not pushed (${(error as Error).message}); the leader folds it from the journal`,
        );
      });
    this.pushes.add(push);
    void push.finally(() => this.pushes.delete(push));
  }

  /** Pushes what is pending and waits for every push. */
  async close(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.pushes, this.rejections.close()]);
  }
}

export interface AggregatorOptions {
  readonly storage: Storage;
  /** Where validated updates go: the local coordinator (embedded) or the journal (distributed). */
  readonly coordinator: (taskId: string) => AggregationTarget | null;
  readonly admission: AdmissionCounter;
  readonly signer: AssignmentSigner;
  readonly now?: () => number;
}

const REJECTION_CODES = {
  stale: 'stale',
  wrong_round: 'stale',
  shape: 'shape',
  non_finite: 'non_finite',
  unknown_version: 'unknown_version',
  not_assigned: 'not_assigned',
  secagg_abort: 'internal',
} as const;

function parseHeader(header: Record<string, unknown>): UpdateHeader {
  const { taskId, assignmentId, baseVersion, numExamples, trainLoss } = header;
  if (typeof taskId !== 'string' || typeof assignmentId !== 'string')
    throw new ApiError('bad_request', 'update header needs string taskId and assignmentId');
  if (typeof baseVersion !== 'number' || !Number.isInteger(baseVersion) || baseVersion < 0)
    throw new ApiError('bad_request', 'update header needs an integer baseVersion ≥ 0');
  if (typeof numExamples !== 'number')
    throw new ApiError('bad_request', 'update header needs a numeric numExamples');
  if (!(Number.isFinite(numExamples) && numExamples >= 0))
    throw new ApiError('non_finite', `numExamples must be a finite number ≥ 0, got ${numExamples}`);
  if (trainLoss !== undefined && trainLoss !== null && typeof trainLoss !== 'number')
    throw new ApiError('bad_request', 'trainLoss must be a number');
  const base = { taskId, assignmentId, baseVersion, numExamples };
  return typeof trainLoss === 'number' && Number.isFinite(trainLoss) ? { ...base, trainLoss } : base;
}

/** Width (ms) of the deadline buckets of the replay cache: each is dropped whole once past. */
const REPLAY_BUCKET_MS = 10_000;

export class Aggregator {
  /** Updates being folded/journaled now, by assignment: a concurrent replay waits for the first. */
  private readonly pending = new Map<string, Promise<UpdateResponse>>();
  /**
   * Answers this aggregator gave to the assignments it applied since it started, until they lapse
   * (the replay cache): bucketed by assignment deadline (bucket b holds deadlines in
   * [b, b + 1) × REPLAY_BUCKET_MS), each keyed by the assignment's signature, the canonical
   * base64url of its MAC, which identifies a verified assignment. It holds about the uploads
   * answered in the last assignment TTL (rate × TTL) and no more: a bucket is dropped whole once
   * every deadline in it has passed. ~120 bytes an answer (the MAC's 22-character string, its Map
   * slot and the answer object, shared with the previous one when equal), against ~300 keyed by
   * the whole id with a per-entry deadline.
   */
  private readonly recent = new Map<number, Map<string, UpdateResponse>>();
  private recentSize = 0;
  private lastAnswer: UpdateResponse | null = null;
  private lastPrune = 0;
  private readonly startedAt: number;
  private readonly now: () => number;

  constructor(private readonly options: AggregatorOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  /**
   * Handles one upload for `routeTaskId` by `deviceId`. Resolves with the response to send (a
   * replay of an applied assignment gets the original answer with `duplicate: true`); throws an
   * ApiError for every refusal.
   */
  async submit(
    deviceId: string,
    routeTaskId: string,
    idempotencyKey: string | undefined,
    body: Uint8Array,
    /** Gives `body`'s memory back early once nothing reads it any more (FoldInput.releaseDelta). */
    releaseBody?: () => void,
  ): Promise<UpdateResponse> {
    if (idempotencyKey === undefined || idempotencyKey.length === 0 || idempotencyKey.length > 256)
      throw new ApiError('bad_request', 'an Idempotency-Key header (1–256 characters) is required');
    const coordinator = this.options.coordinator(routeTaskId);
    if (coordinator === null) throw new ApiError('not_found', `unknown task ${routeTaskId}`);
    let frame: ReturnType<typeof decodeFrame<Record<string, unknown>>>;
    try {
      frame = decodeFrame<Record<string, unknown>>(body, FRAME_KIND_UPDATE, { copy: false });
    } catch (error) {
      if (error instanceof FrameError) throw new ApiError('bad_request', error.message);
      throw error;
    }
    const header = parseHeader(frame.header);
    if (header.taskId !== routeTaskId)
      throw new ApiError('bad_request', `frame is for task ${header.taskId}, the URL for ${routeTaskId}`);
    const claims = this.options.signer.verify(header.assignmentId);
    if (claims === null || claims.taskId !== routeTaskId)
      return this.refuse(coordinator, 'not_assigned', 'unknown assignment for this task');
    // verify() accepts only the exact text the selector issued, so the MAC text names the id.
    const signature = macText(header.assignmentId);
    if (claims.deviceId !== deviceId)
      throw new ApiError('forbidden', 'this assignment belongs to another device');
    if (claims.version !== header.baseVersion)
      return this.refuse(
        coordinator,
        'unknown_version',
        `assignment was for version ${claims.version}, the update says ${header.baseVersion}`,
      );

    // Deduplicate before anything can change state; a replay gets the first answer.
    const key = header.assignmentId;
    const inFlight = this.pending.get(key);
    if (inFlight !== undefined) return { ...(await inFlight), duplicate: true };
    const recent = this.recent.get(Math.floor(claims.deadline / REPLAY_BUCKET_MS))?.get(signature);
    if (recent !== undefined) return { ...recent, duplicate: true };
    let settle!: (response: UpdateResponse) => void;
    let fail!: (error: unknown) => void;
    const mine = new Promise<UpdateResponse>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    mine.catch(() => {});
    this.pending.set(key, mine);
    try {
      // A key can only have been applied before if its assignment predates this aggregator or has
      // lapsed (then `recent` forgot it): everything applied since start is in `recent`. Skipping the
      // storage read otherwise keeps reads from splitting the storage's group commits.
      const issuedAt = claims.deadline - coordinator.runtime.spec.assignmentTtlMs;
      const surelyNew = issuedAt > this.startedAt && claims.deadline >= this.now();
      const applied =
        coordinator.journalDedups || surelyNew
          ? null
          : await this.options.storage.lookupIdempotencyKey(routeTaskId, key);
      if (applied !== null) {
        const response = { ...(applied.response as UpdateResponse), duplicate: true };
        settle(response);
        return response;
      }
      if (claims.deadline < this.now()) {
        this.releaseSlot(routeTaskId, key);
        return this.refuse(coordinator, 'not_assigned', 'the assignment has lapsed; check in again');
      }
      // A task that finished for good applies nothing more (the coordinator refuses it again at fold
      // time, where no other update interleaves); answered before the floats are read.
      const finished = coordinator.finished?.() ?? null;
      if (finished !== null) {
        this.releaseSlot(routeTaskId, key);
        return this.refuse(coordinator, 'finished', describeFinished(finished));
      }
      const delta = frame.floats;
      if (delta.length !== coordinator.numParams)
        return this.refuse(
          coordinator,
          'shape',
          `update has ${delta.length} values, the model ${coordinator.numParams}`,
        );
      const squaredNorm = squaredNormOf(delta, body);
      if (!Number.isFinite(squaredNorm)) {
        // Tell NaN/Inf apart from an overflowing (but finite) update.
        for (let i = 0; i < delta.length; i++)
          if (!Number.isFinite(delta[i] as number))
            return this.refuse(coordinator, 'non_finite', 'update contains NaN or Infinity');
      }
      const bound = coordinator.runtime.spec.normBound;
      if (bound !== undefined && !(Math.sqrt(squaredNorm) <= bound))
        return this.refuse(
          coordinator,
          'norm_bound',
          `update norm ${Math.sqrt(squaredNorm).toPrecision(4)} exceeds ${bound}`,
        );
      // Finite: proven by the norm pass above, so the strategy need not scan the floats again.
      const checked = {
        idempotencyKey: key,
        keyExpiresAt: claims.deadline,
        deviceId,
        assignmentId: key,
        baseVersion: header.baseVersion,
        numExamples: header.numExamples,
        delta,
        verifiedFinite: true as const,
        ...(releaseBody === undefined ? {} : { releaseDelta: releaseBody }),
      };
      const input = header.trainLoss === undefined ? checked : { ...checked, trainLoss: header.trainLoss };
      const outcome: UpdateResponse | Rejected = await coordinator.submit(input);
      this.releaseSlot(routeTaskId, key);
      if ('kind' in outcome) {
        throw new ApiError(REJECTION_CODES[outcome.reason], outcome.message);
      }
      settle(outcome);
      this.remember(signature, outcome, claims.deadline);
      return outcome;
    } catch (error) {
      fail(error);
      throw error;
    } finally {
      this.pending.delete(key);
    }
  }

  /** Answers in the replay cache now (see `recent`). */
  get replayCacheSize(): number {
    return this.recentSize;
  }

  private remember(signature: string, response: UpdateResponse, deadline: number): void {
    const last = this.lastAnswer;
    const answer =
      last !== null &&
      last.version === response.version &&
      last.staleness === response.staleness &&
      last.duplicate === response.duplicate &&
      last.accepted === response.accepted &&
      Object.keys(response).length === 4
        ? last
        : response;
    this.lastAnswer = answer;
    const bucket = Math.floor(deadline / REPLAY_BUCKET_MS);
    let answers = this.recent.get(bucket);
    if (answers === undefined) {
      answers = new Map();
      this.recent.set(bucket, answers);
    }
    if (!answers.has(signature)) this.recentSize++;
    answers.set(signature, answer);
    const now = this.now();
    if (now - this.lastPrune < REPLAY_BUCKET_MS) return;
    this.lastPrune = now;
    // A bucket goes once its last deadline has passed: an unlapsed assignment is never forgotten
    // (the `surelyNew` shortcut above relies on it).
    for (const [b, entries] of this.recent)
      if ((b + 1) * REPLAY_BUCKET_MS <= now) {
        this.recent.delete(b);
        this.recentSize -= entries.size;
      }
  }

  /** Frees the admission slot; best effort (a slot not freed lapses at its deadline anyway). */
  private releaseSlot(taskId: string, slotId: string): void {
    this.options.admission.release(taskId, slotId).catch(() => {});
  }

  private refuse(
    coordinator: AggregationTarget,
    code: (typeof REJECTION_CODES)[keyof typeof REJECTION_CODES] | 'norm_bound' | 'finished',
    message: string,
  ): never {
    coordinator.countRejection(code);
    throw new ApiError(code, message);
  }
}

/**
 * Σ delta[i]² in float64, NaN or Infinity when any element is not finite: summed chunk by chunk as
 * the body arrived where the body pool lent it (bodies.ts), else with the Wasm SIMD kernel where the
 * floats lie in the update arena, else the JS loop.
 */
function squaredNormOf(delta: Float32Array, body: Uint8Array): number {
  const presummed = presummedSquares(body, delta);
  if (presummed !== null) return presummed;
  const arena = arenaOf(delta);
  return (arena === undefined ? null : sumOfSquaresInMemory(arena.memory, delta)) ?? sumOfSquares(delta);
}

/**
 * The MAC part of a verified assignment id, as a fresh copy: a slice would keep the whole id alive
 * in the replay cache.
 */
function macText(id: string): string {
  return Buffer.from(id.slice(id.indexOf('.') + 1), 'base64url').toString('base64url');
}

/** Journals an accepted update durably before the client is answered; a storage failure is a 503. */
async function journalAccepted(
  storage: Storage,
  taskId: string,
  input: FoldInput,
  response: UpdateResponse,
): Promise<Awaited<ReturnType<Storage['appendAccepted']>>> {
  try {
    return await storage.appendAccepted(journalEntry(taskId, input, response));
  } catch (error) {
    throw new ApiError('unavailable', `the update could not be stored: ${(error as Error).message}`, 1000);
  }
}
