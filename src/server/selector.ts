/**
 * Selector role: device check-in. It picks an eligible task (attributes match the task's
 * eligibility), applies admission control (target concurrency through a shared counter, a
 * per-device minimum check-in interval) and hands out a signed assignment of the newest published
 * version, or tells the device when to come back. It keeps no state of its own.
 */
import type { AdmissionCounter } from './admission.ts';
import type { AssignmentSigner } from './assignment.ts';
import { ApiError } from './errors.ts';
import { type CheckinRequest, type CheckinResponse, ROUTES, routePath } from './protocol.ts';
import type { TaskSpec } from './task.ts';

/** What the selector needs to know about a task it can assign. */
export interface SelectableTask {
  readonly spec: TaskSpec;
  /** Newest published version, or null while the task is not serving (recovering, no lease). */
  currentVersion(): number | null;
  /** Extra facts for the client's training plan (model input shape). */
  readonly planExtras: Readonly<Record<string, unknown>>;
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
    for (const task of eligible) {
      const version = task.currentVersion();
      if (version === null) {
        retryAfterMs = Math.min(retryAfterMs, 1000);
        reason = 'task is recovering';
        continue;
      }
      const spec = task.spec;
      const deadline = now + spec.assignmentTtlMs;
      const assignmentId = this.options.signer.sign({ taskId: spec.taskId, deviceId, version, deadline });
      if (!(await this.options.admission.tryAcquire(spec.taskId, assignmentId, spec.concurrency, deadline))) {
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
    return { action: 'wait', retryAfterMs: Number.isFinite(retryAfterMs) ? retryAfterMs : 1000, reason };
  }
}
