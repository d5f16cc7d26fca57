/**
 * Selector role: device check-in. It picks an eligible task (attributes match the task's
 * eligibility), applies admission control (target concurrency through a shared counter, a
 * per-device minimum check-in interval) and hands out a signed assignment of the newest published
 * version, or tells the device when to come back. It keeps no state of its own.
 *
 * Sync tasks: admission is per round. The coordinator's round cohort (the strategy's selection
 * target, cohortSize · (1 + overSelection)) decides who joins; the assignment names the round, and
 * a device that finds the round full (or a new version being committed) is told to wait.
 *
 * A task that finished for good (its privacy budget is spent, see TaskCoordinator.finished) hands
 * out no assignment: the answer is a wait that lists it under `finished`.
 */
import type { AdmissionCounter } from './admission.ts';
import type { AssignmentSigner } from './assignment.ts';
import { ApiError } from './errors.ts';
import {
  type CheckinRequest,
  type CheckinResponse,
  describeFinished,
  type FinishedTask,
  ROUTES,
  routePath,
} from './protocol.ts';
import type { TaskSpec } from './task.ts';

/** Pacing for a device whose every eligible task finished for good. */
export const FINISHED_RETRY_MS = 3_600_000;

/** What the selector needs to know about a task it can assign. */
export interface SelectableTask {
  readonly spec: TaskSpec;
  /** Newest published version, or null while the task is not serving (recovering, no lease). */
  currentVersion(): number | null;
  /** Extra facts for the client's training plan (model input shape). */
  readonly planExtras: Readonly<Record<string, unknown>>;
  /** Sync tasks: the current round's cohort, kept by the coordinator (absent for asynchronous tasks). */
  readonly cohort?: RoundCohort | null;
  /** Why the task stopped for good (its privacy budget is spent); null while it runs or not known here. */
  finished?(): FinishedTask | null;
}

/** A sync task's round admission (TaskCoordinator implements it). */
export interface RoundCohort {
  /**
   * Joins the current round (`now`: ms since epoch): the assignment is signed by `sign` with the
   * round's version and number. Null when the round has selected its target or a new version is
   * being committed. Resolves once the round (its deadline and cohort) is stored.
   */
  join(
    now: number,
    deadline: number,
    sign: (version: number, round: number) => string,
  ): Promise<{ readonly assignmentId: string; readonly version: number; readonly round: number } | null>;
  /** The device will not train after all (e.g. its admission slot was refused). */
  leave(assignmentId: string): void;
}

export interface SelectorOptions {
  readonly tasks: () => readonly SelectableTask[];
  readonly admission: AdmissionCounter;
  readonly signer: AssignmentSigner;
  readonly now?: () => number;
}

type Attributes = NonNullable<CheckinRequest['attributes']>;

export function parseCheckinRequest(body: unknown): CheckinRequest {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new ApiError('bad_request', 'check-in body must be a JSON object');
  const attributes = (body as { attributes?: unknown }).attributes;
  if (attributes === undefined) return {};
  if (attributes === null || typeof attributes !== 'object' || Array.isArray(attributes))
    throw new ApiError('bad_request', 'attributes must be an object');
  const entries = Object.entries(attributes as Record<string, unknown>);
  if (entries.length > 64) throw new ApiError('bad_request', 'at most 64 attributes');
  for (const [key, value] of entries)
    if (!['string', 'number', 'boolean'].includes(typeof value) || key.length > 64)
      throw new ApiError(
        'bad_request',
        `attribute ${JSON.stringify(key.slice(0, 64))} must be a string, number or boolean`,
      );
  return { attributes: attributes as Attributes };
}

export function isEligible(spec: TaskSpec, attributes: Attributes): boolean {
  for (const [key, wanted] of Object.entries(spec.eligibility)) if (attributes[key] !== wanted) return false;
  return true;
}

export class Selector {
  private readonly now: () => number;
  constructor(private readonly options: SelectorOptions) {
    this.now = options.now ?? Date.now;
  }

  async checkin(deviceId: string, request: CheckinRequest): Promise<CheckinResponse> {
    const now = this.now();
    const attributes = request.attributes ?? {};
    const eligible = this.options.tasks().filter((t) => isEligible(t.spec, attributes));
    if (eligible.length === 0) return { action: 'wait', retryAfterMs: 60_000, reason: 'no eligible task' };
    const minInterval = Math.max(...eligible.map((t) => t.spec.minCheckinIntervalMs));
    const wait = await this.options.admission.touch(deviceId, minInterval, now);
    if (wait > 0)
      throw new ApiError(
        'rate_limited',
        `checked in too soon; come back in ${Math.ceil(wait)} ms`,
        Math.ceil(wait),
      );
    let retryAfterMs = Number.POSITIVE_INFINITY;
    let reason = 'all eligible tasks are at their target concurrency';
    const finished: FinishedTask[] = [];
    for (const task of eligible) {
      const done = task.finished?.() ?? null;
      if (done !== null) {
        finished.push(done);
        continue;
      }
      let version = task.currentVersion();
      if (version === null) {
        retryAfterMs = Math.min(retryAfterMs, 1000);
        reason = 'task is recovering';
        continue;
      }
      const spec = task.spec;
      const deadline = now + spec.assignmentTtlMs;
      let assignmentId: string;
      let limit = spec.concurrency;
      if (spec.strategy.kind === 'sync') {
        if (task.cohort == null) {
          retryAfterMs = Math.min(retryAfterMs, 1000);
          reason = 'sync rounds are served only where the coordinator runs';
          continue;
        }
        const joined = await task.cohort.join(now, deadline, (v, round) =>
          this.options.signer.sign({ taskId: spec.taskId, deviceId, version: v, deadline, round }),
        );
        if (joined === null) {
          retryAfterMs = Math.min(retryAfterMs, spec.waitMs);
          reason = 'the current round has selected its cohort';
          continue;
        }
        assignmentId = joined.assignmentId;
        version = joined.version;
        // The round's selection target is the limit; the counter only tracks who is training.
        limit = Number.MAX_SAFE_INTEGER;
      } else assignmentId = this.options.signer.sign({ taskId: spec.taskId, deviceId, version, deadline });
      if (!(await this.options.admission.tryAcquire(spec.taskId, assignmentId, limit, deadline))) {
        task.cohort?.leave(assignmentId);
        this.options.signer.forget(assignmentId);
        retryAfterMs = Math.min(retryAfterMs, spec.waitMs);
        continue;
      }
      return {
        action: 'train',
        taskId: spec.taskId,
        assignmentId,
        version,
        modelUrl: routePath(ROUTES.model, { taskId: spec.taskId, version }),
        plan: { model: spec.model, localTrain: spec.localTrain, ...task.planExtras },
        deadline,
      };
    }
    if (finished.length === 0)
      return { action: 'wait', retryAfterMs: Number.isFinite(retryAfterMs) ? retryAfterMs : 1000, reason };
    if (finished.length === eligible.length)
      return {
        action: 'wait',
        retryAfterMs: FINISHED_RETRY_MS,
        reason: finished.map(describeFinished).join('; '),
        finished,
        allFinished: true,
      };
    return { action: 'wait', retryAfterMs, reason, finished };
  }
}
