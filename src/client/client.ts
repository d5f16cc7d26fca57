/**
 * OrchardClient: one device's side of the v1 protocol, the same in Node and in browsers (all host
 * access goes through a Platform).
 *
 * A trip is register (once) → check in → download the assigned model version → train locally →
 * upload the delta. Before the upload is sent it is persisted with its Idempotency-Key, so a device
 * that restarts, or loses the answer to a request the server did apply, re-sends the very same bytes
 * under the same key and the server applies it once. Network failures, 5xx and `unavailable`
 * answers are retried with jittered exponential backoff (bounded by attempts and a deadline); other
 * 4xx answers are typed ApiErrors and are not retried. Check-in `wait` answers and `retryAfterMs`
 * hints are honoured: `run()` sleeps for them instead of asking again early.
 */
import {
  type ApiErrorBody,
  type ApiErrorCode,
  BINARY_CONTENT_TYPE,
  type CheckinResponse,
  type DecodedFrame,
  decodeFrame,
  encodeFrame,
  type FinishedTask,
  FRAME_KIND_MODEL,
  FRAME_KIND_UPDATE,
  FrameError,
  type ModelHeader,
  type RegisterResponse,
  ROUTES,
  routePath,
  type TrainPlan,
  type UpdateHeader,
  type UpdateResponse,
} from '../server/protocol.ts';
import { ApiError, isRetryable, OrchardClientError } from './errors.ts';
import type { Platform } from './platform.ts';
import { backoffDelay, type RetryPolicy, retryPolicy, unitFromBytes } from './retry.ts';

export type Assignment = Extract<CheckinResponse, { action: 'train' }>;
export type WaitAdvice = Extract<CheckinResponse, { action: 'wait' }>;

export interface TrainInput {
  readonly taskId: string;
  readonly version: number;
  readonly plan: TrainPlan;
  /** The downloaded global parameters (the trainer may not keep a reference beyond the call). */
  readonly params: Float32Array;
}

export interface TrainOutput {
  /** start − trained parameters, as src/fl/client.ts's trainLocal returns it. */
  readonly delta: Float32Array;
  readonly numExamples: number;
  readonly loss?: number;
}

/** Local training on the device's own data; see trainer.ts for the src/nn + trainLocal one. */
export type Trainer = (input: TrainInput) => TrainOutput | Promise<TrainOutput>;

export interface DeviceIdentity {
  readonly deviceId: string;
  readonly token: string;
}

/** A trained update that is persisted and ready to send (or re-send, after a restart). */
export interface PendingUpload {
  readonly taskId: string;
  readonly assignmentId: string;
  readonly baseVersion: number;
  readonly idempotencyKey: string;
  readonly numExamples: number;
  readonly loss?: number;
  /** The encoded update frame, byte for byte what is (re)sent. */
  readonly frame: Uint8Array;
}

export type TripOutcome =
  | {
      readonly kind: 'accepted';
      readonly response: UpdateResponse;
      /** True when this trip only re-sent an upload persisted by an earlier run. */
      readonly resumed: boolean;
      readonly numExamples: number;
      readonly loss?: number;
    }
  /** The server refused the update for good (stale, norm bound, not assigned, …); it was discarded. */
  | { readonly kind: 'rejected'; readonly error: ApiError }
  /** No work now; come back after `retryAfterMs`. */
  | { readonly kind: 'wait'; readonly retryAfterMs: number; readonly reason: string }
  /** Every task this device is eligible for stopped for good (privacy budget spent): no work will come. */
  | { readonly kind: 'finished'; readonly tasks: readonly FinishedTask[]; readonly reason: string }
  /** The assignment went stale before training (its model version is no longer served); check in again. */
  | { readonly kind: 'expired'; readonly error: ApiError };

/** True when a model download failed because the assigned version is gone (the server moved on). */
export function isExpiredAssignment(e: unknown): e is ApiError {
  return e instanceof ApiError && (e.code === 'not_found' || e.code === 'unknown_version');
}

/** One HTTP exchange, reported to `onRequest` (latency histograms, logging). */
export interface RequestEvent {
  readonly route: 'register' | 'checkin' | 'model' | 'update';
  /** HTTP status, or 0 when no answer came back. */
  readonly status: number;
  readonly ms: number;
  readonly attempt: number;
  readonly error?: ClientErrorLike;
}

interface ClientErrorLike {
  readonly code: string;
  readonly message: string;
}

export interface OrchardClientOptions {
  /** Server origin, e.g. http://127.0.0.1:8080 (a trailing slash is ignored). */
  readonly server: string;
  readonly platform: Platform;
  readonly trainer: Trainer;
  /** Needed only the first time (register); afterwards the stored device token is used. */
  readonly enrollmentKey?: string;
  readonly attributes?: Readonly<Record<string, string | number | boolean>>;
  readonly retry?: Partial<RetryPolicy>;
  /** Storage key prefix, so several clients can share one store. */
  readonly storagePrefix?: string;
  readonly onRequest?: (event: RequestEvent) => void;
}

interface RequestSpec {
  readonly route: RequestEvent['route'];
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: Uint8Array | string;
  readonly contentType?: string;
  readonly token?: string;
  readonly idempotencyKey?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Longest wait `run()` accepts from the server in one go, so a bad hint cannot park a device forever. */
const MAX_PACING_MS = 6 * 60 * 60 * 1000;

export class OrchardClient {
  readonly server: string;
  private readonly platform: Platform;
  private readonly trainer: Trainer;
  private readonly policy: RetryPolicy;
  private readonly prefix: string;
  private readonly options: OrchardClientOptions;
  private identity: DeviceIdentity | null = null;

  constructor(options: OrchardClientOptions) {
    let origin: URL;
    try {
      origin = new URL(options.server);
    } catch {
      throw new OrchardClientError(
        'invalid_argument',
        `server must be an absolute URL, got '${options.server}'`,
      );
    }
    if (origin.protocol !== 'http:' && origin.protocol !== 'https:')
      throw new OrchardClientError('invalid_argument', `server must be http(s), got ${origin.protocol}`);
    this.server = options.server.replace(/\/+$/, '');
    this.platform = options.platform;
    this.trainer = options.trainer;
    this.policy = retryPolicy(options.retry);
    this.prefix = options.storagePrefix ?? 'orchard';
    this.options = options;
  }

  /** The stored identity, or a new one from the enrollment key (retried like every other call). */
  async register(signal?: AbortSignal): Promise<DeviceIdentity> {
    if (this.identity !== null) return this.identity;
    const stored = await this.readJson<DeviceIdentity & { server: string }>('device');
    if (stored !== null && stored.server === this.server) {
      this.identity = { deviceId: stored.deviceId, token: stored.token };
      return this.identity;
    }
    const key = this.options.enrollmentKey;
    if (key === undefined)
      throw new OrchardClientError(
        'invalid_argument',
        'this device is not registered yet and no enrollmentKey was given',
      );
    const res = await this.withRetry(signal, (attempt) =>
      this.request(
        {
          route: 'register',
          method: 'POST',
          path: ROUTES.register,
          body: JSON.stringify({ enrollmentKey: key }),
          contentType: 'application/json',
        },
        attempt,
        signal,
      ),
    );
    const body = (await readJsonBody(res)) as Partial<RegisterResponse>;
    if (typeof body.deviceId !== 'string' || typeof body.token !== 'string')
      throw new OrchardClientError('protocol', 'register answer lacks deviceId/token');
    this.identity = { deviceId: body.deviceId, token: body.token };
    await this.writeJson('device', { ...this.identity, server: this.server });
    return this.identity;
  }

  /** Forgets the stored identity (the next call registers again with the enrollment key). */
  async forgetDevice(): Promise<void> {
    this.identity = null;
    await this.platform.storage.delete(this.key('device'));
  }

  async checkin(signal?: AbortSignal): Promise<CheckinResponse> {
    const { token } = await this.register(signal);
    let res: Response;
    try {
      res = await this.withRetry(signal, (attempt) =>
        this.request(
          {
            route: 'checkin',
            method: 'POST',
            path: ROUTES.checkin,
            body: JSON.stringify(this.options.attributes ? { attributes: this.options.attributes } : {}),
            contentType: 'application/json',
            token,
          },
          attempt,
          signal,
        ),
      );
    } catch (e) {
      // Rate limited for longer than the retry budget: that is pacing advice, not a failure.
      const last = e instanceof OrchardClientError && e.code === 'retries_exhausted' ? e.cause : e;
      if (last instanceof ApiError && last.code === 'rate_limited' && last.retryAfterMs !== undefined)
        return { action: 'wait', retryAfterMs: last.retryAfterMs, reason: last.message };
      throw e;
    }
    const body = (await readJsonBody(res)) as CheckinResponse;
    if (body.action === 'train') {
      if (
        typeof body.taskId !== 'string' ||
        typeof body.assignmentId !== 'string' ||
        !Number.isInteger(body.version) ||
        typeof body.modelUrl !== 'string'
      )
        throw new OrchardClientError(
          'protocol',
          'check-in assignment lacks taskId/assignmentId/version/modelUrl',
        );
      await this.writeJson('assignment', body);
    } else if (body.action === 'wait') {
      if (!(Number.isFinite(body.retryAfterMs) && body.retryAfterMs >= 0))
        throw new OrchardClientError('protocol', `check-in wait has retryAfterMs ${body.retryAfterMs}`);
    } else {
      throw new OrchardClientError(
        'protocol',
        `unknown check-in action ${(body as { action: unknown }).action}`,
      );
    }
    return body;
  }

  /** Downloads the assigned model version and checks that the frame is the one asked for. */
  async downloadModel(assignment: Assignment, signal?: AbortSignal): Promise<Float32Array> {
    const { token } = await this.register(signal);
    const res = await this.withRetry(signal, (attempt) =>
      this.request({ route: 'model', method: 'GET', path: assignment.modelUrl, token }, attempt, signal),
    );
    const bytes = new Uint8Array(await res.arrayBuffer());
    let frame: DecodedFrame<ModelHeader>;
    try {
      frame = decodeFrame<ModelHeader>(bytes, FRAME_KIND_MODEL);
    } catch (e) {
      if (e instanceof FrameError) throw new OrchardClientError('protocol', `model frame: ${e.message}`);
      throw e;
    }
    if (frame.header.taskId !== assignment.taskId || frame.header.version !== assignment.version)
      throw new OrchardClientError(
        'protocol',
        `asked for ${assignment.taskId}@${assignment.version}, got ${frame.header.taskId}@${frame.header.version}`,
      );
    return frame.floats;
  }

  /**
   * Downloads, trains and persists the update for an assignment; the result can be sent with
   * `submit` now or after a restart (`pendingUpload`).
   */
  async prepare(assignment: Assignment, signal?: AbortSignal): Promise<PendingUpload> {
    const params = await this.downloadModel(assignment, signal);
    const out = await this.trainer({
      taskId: assignment.taskId,
      version: assignment.version,
      plan: assignment.plan,
      params,
    });
    if (out.delta.length !== params.length)
      throw new OrchardClientError(
        'invalid_argument',
        `trainer returned ${out.delta.length} values for a model of ${params.length}`,
      );
    const header: UpdateHeader = {
      taskId: assignment.taskId,
      assignmentId: assignment.assignmentId,
      baseVersion: assignment.version,
      numExamples: out.numExamples,
      ...(out.loss !== undefined && Number.isFinite(out.loss) ? { trainLoss: out.loss } : {}),
    };
    const pending: PendingUpload = {
      taskId: assignment.taskId,
      assignmentId: assignment.assignmentId,
      baseVersion: assignment.version,
      idempotencyKey: hex(this.platform.randomBytes(16)),
      numExamples: out.numExamples,
      ...(header.trainLoss !== undefined ? { loss: header.trainLoss } : {}),
      frame: encodeFrame(FRAME_KIND_UPDATE, header, out.delta),
    };
    await this.platform.storage.set(this.key('pending'), packPending(pending));
    await this.platform.storage.delete(this.key('assignment'));
    return pending;
  }

  /** The upload a previous run persisted but did not finish, if any. */
  async pendingUpload(): Promise<PendingUpload | null> {
    const bytes = await this.platform.storage.get(this.key('pending'));
    if (bytes === null) return null;
    try {
      return unpackPending(bytes);
    } catch {
      // A torn or foreign value cannot be re-sent faithfully; dropping it loses one update at most.
      await this.platform.storage.delete(this.key('pending'));
      return null;
    }
  }

  /**
   * Sends a persisted update under its idempotency key, retrying transient failures. A final
   * refusal (a 4xx other than a replay) discards the pending upload and is returned as 'rejected';
   * retries running out keep it persisted for the next run and throw `retries_exhausted`.
   */
  async submit(pending: PendingUpload, signal?: AbortSignal, resumed = false): Promise<TripOutcome> {
    const { token } = await this.register(signal);
    let res: Response;
    try {
      res = await this.withRetry(signal, (attempt) =>
        this.request(
          {
            route: 'update',
            method: 'POST',
            path: routePath(ROUTES.update, { taskId: pending.taskId }),
            body: pending.frame,
            contentType: BINARY_CONTENT_TYPE,
            token,
            idempotencyKey: pending.idempotencyKey,
          },
          attempt,
          signal,
        ),
      );
    } catch (e) {
      // Anything but a server answer (retries ran out, aborted) keeps the upload for the next run.
      if (!(e instanceof ApiError)) throw e;
      if (e.code === 'duplicate') {
        await this.abandon();
        return {
          kind: 'accepted',
          response: { accepted: true, duplicate: true, staleness: 0, version: pending.baseVersion },
          resumed,
          numExamples: pending.numExamples,
          ...(pending.loss !== undefined ? { loss: pending.loss } : {}),
        };
      }
      // A token problem says nothing about the update itself: keep it for after re-enrolment.
      if (e.code === 'unauthenticated' || e.code === 'revoked') throw e;
      await this.abandon();
      return { kind: 'rejected', error: e };
    }
    const body = (await readJsonBody(res)) as UpdateResponse;
    if (body.accepted !== true)
      throw new OrchardClientError('protocol', 'update answer lacks accepted: true');
    await this.abandon();
    return {
      kind: 'accepted',
      response: body,
      resumed,
      numExamples: pending.numExamples,
      ...(pending.loss !== undefined ? { loss: pending.loss } : {}),
    };
  }

  /** Drops the pending upload and stored assignment (a device that gives up on its trip). */
  async abandon(): Promise<void> {
    await this.platform.storage.delete(this.key('pending'));
    await this.platform.storage.delete(this.key('assignment'));
  }

  /**
   * One trip: re-send a persisted upload if there is one; else continue a stored assignment whose
   * deadline has not passed; else check in, and train and upload if assigned.
   */
  async runOnce(signal?: AbortSignal): Promise<TripOutcome> {
    const pending = await this.pendingUpload();
    if (pending !== null) return this.submit(pending, signal, true);
    let assignment = await this.readJson<Assignment>('assignment');
    if (assignment !== null && !(assignment.deadline > this.platform.now())) assignment = null;
    if (assignment === null) {
      const answer = await this.checkin(signal);
      if (answer.action === 'wait')
        return answer.allFinished === true
          ? { kind: 'finished', tasks: answer.finished ?? [], reason: answer.reason }
          : { kind: 'wait', retryAfterMs: answer.retryAfterMs, reason: answer.reason };
      assignment = answer;
    }
    let prepared: PendingUpload;
    try {
      prepared = await this.prepare(assignment, signal);
    } catch (e) {
      if (!isExpiredAssignment(e)) throw e;
      await this.abandon();
      return { kind: 'expired', error: e };
    }
    return this.submit(prepared, signal);
  }

  /**
   * Trips until `trips` have been uploaded (accepted or rejected), `signal` aborts or every eligible
   * task has finished for good, sleeping for the server's pacing between check-ins (and `idleMs`
   * after a completed trip). Resolves with the outcomes; errors other than aborting propagate.
   */
  async run(
    options: {
      trips?: number;
      signal?: AbortSignal;
      idleMs?: number;
      onTrip?: (o: TripOutcome) => void;
    } = {},
  ): Promise<TripOutcome[]> {
    const outcomes: TripOutcome[] = [];
    const { signal } = options;
    let uploads = 0;
    while (uploads < (options.trips ?? Number.POSITIVE_INFINITY) && !signal?.aborted) {
      let outcome: TripOutcome;
      try {
        outcome = await this.runOnce(signal);
      } catch (e) {
        if (signal?.aborted) break;
        throw e;
      }
      outcomes.push(outcome);
      options.onTrip?.(outcome);
      if (outcome.kind === 'finished') break;
      const pause =
        outcome.kind === 'wait' ? Math.min(outcome.retryAfterMs, MAX_PACING_MS) : (options.idleMs ?? 0);
      if (outcome.kind !== 'wait') uploads++;
      if (pause > 0 && uploads < (options.trips ?? Number.POSITIVE_INFINITY)) {
        try {
          await this.platform.sleep(pause, signal);
        } catch {
          break;
        }
      }
    }
    return outcomes;
  }

  private key(name: string): string {
    return `${this.prefix}/${name}`;
  }

  private async readJson<T>(name: string): Promise<T | null> {
    const bytes = await this.platform.storage.get(this.key(name));
    if (bytes === null) return null;
    try {
      return JSON.parse(decoder.decode(bytes)) as T;
    } catch {
      await this.platform.storage.delete(this.key(name));
      return null;
    }
  }

  private async writeJson(name: string, value: unknown): Promise<void> {
    await this.platform.storage.set(this.key(name), encoder.encode(JSON.stringify(value)));
  }

  /** Runs `op` until it succeeds, fails for good, or the policy's attempts or deadline run out. */
  private async withRetry<T>(
    signal: AbortSignal | undefined,
    op: (attempt: number) => Promise<T>,
  ): Promise<T> {
    const deadline = this.platform.now() + this.policy.deadlineMs;
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw new OrchardClientError('aborted', 'aborted by the caller');
      try {
        return await op(attempt);
      } catch (e) {
        if (signal?.aborted) throw new OrchardClientError('aborted', 'aborted by the caller', { cause: e });
        if (!isRetryable(e)) throw e;
        const hint = e instanceof ApiError ? e.retryAfterMs : undefined;
        const wait = backoffDelay(this.policy, attempt, unitFromBytes(this.platform.randomBytes(4)), hint);
        if (attempt >= this.policy.maxAttempts || this.platform.now() + wait > deadline)
          throw new OrchardClientError(
            'retries_exhausted',
            `gave up after ${attempt} attempt(s): ${(e as Error).message}`,
            { cause: e },
          );
        try {
          await this.platform.sleep(wait, signal);
        } catch {
          throw new OrchardClientError('aborted', 'aborted by the caller', { cause: e });
        }
      }
    }
  }

  /** One HTTP exchange with a per-request timeout; error answers become ApiErrors. */
  private async request(
    spec: RequestSpec,
    attempt: number,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => controller.abort(new Error('request timed out')),
      this.policy.requestTimeoutMs,
    );
    const headers: Record<string, string> = {};
    if (spec.contentType !== undefined) headers['content-type'] = spec.contentType;
    if (spec.token !== undefined) headers.authorization = `Bearer ${spec.token}`;
    if (spec.idempotencyKey !== undefined) headers['idempotency-key'] = spec.idempotencyKey;
    const started = monotonicNow();
    const report = (status: number, error?: ClientErrorLike): void =>
      this.options.onRequest?.({
        route: spec.route,
        status,
        ms: monotonicNow() - started,
        attempt,
        ...(error !== undefined ? { error } : {}),
      });
    try {
      let res: Response;
      try {
        const init: RequestInit = { method: spec.method, headers, signal: controller.signal };
        if (spec.body !== undefined) init.body = spec.body as BodyInit;
        res = await this.platform.fetch(`${this.server}${spec.path}`, init);
      } catch (e) {
        const err = new OrchardClientError(
          'network',
          `${spec.method} ${spec.path}: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
        report(0, err);
        throw err;
      }
      if (res.ok) {
        // Read the whole body while the timeout is still armed: a server that stalls mid-body
        // must count as a network failure too.
        const buffered = await bufferResponse(res);
        report(res.status);
        return buffered;
      }
      const err = await apiErrorFrom(res);
      report(res.status, err);
      throw err;
    } catch (e) {
      if (e instanceof OrchardClientError) throw e;
      // Reading the body failed (connection dropped mid-body or timed out).
      throw new OrchardClientError('network', `${spec.method} ${spec.path}: ${(e as Error).message}`, {
        cause: e,
      });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** Reads the whole body while the request's timeout is still armed, and re-wraps it. */
async function bufferResponse(res: Response): Promise<Response> {
  const body = await res.arrayBuffer();
  return new Response(body, { status: res.status, headers: res.headers });
}

async function readJsonBody(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new OrchardClientError('protocol', `expected JSON, got ${JSON.stringify(text.slice(0, 80))}`);
  }
}

const STATUS_CODES: Record<number, ApiErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  408: 'timeout',
  409: 'duplicate',
  413: 'payload_too_large',
  429: 'rate_limited',
  503: 'unavailable',
};

async function apiErrorFrom(res: Response): Promise<ApiError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // the status alone still says what happened
  }
  let code: ApiErrorCode = STATUS_CODES[res.status] ?? (res.status >= 500 ? 'internal' : 'bad_request');
  let message = text.slice(0, 200) || res.statusText;
  let retryAfterMs: number | undefined;
  try {
    const body = JSON.parse(text) as Partial<ApiErrorBody>;
    if (body.error !== undefined && typeof body.error.code === 'string') {
      code = body.error.code;
      message = String(body.error.message);
      if (Number.isFinite(body.error.retryAfterMs)) retryAfterMs = body.error.retryAfterMs;
    }
  } catch {
    // not the protocol's error body (a proxy's page): keep the status-derived code
  }
  const header = res.headers.get('retry-after');
  if (retryAfterMs === undefined && header !== null && /^\d+$/.test(header.trim()))
    retryAfterMs = Number(header) * 1000;
  return new ApiError(res.status, code, message, retryAfterMs);
}

/** Sub-millisecond monotonic time for latencies (performance.now exists in Node and browsers). */
function monotonicNow(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

function hex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** [u32 LE meta length][meta JSON][frame]: one value, so a store write is all-or-nothing. */
function packPending(p: PendingUpload): Uint8Array {
  const { frame, ...meta } = p;
  const json = encoder.encode(JSON.stringify(meta));
  const out = new Uint8Array(4 + json.length + frame.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  out.set(frame, 4 + json.length);
  return out;
}

function unpackPending(bytes: Uint8Array): PendingUpload {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true);
  if (4 + n > bytes.length) throw new Error('truncated pending upload');
  const meta = JSON.parse(decoder.decode(bytes.subarray(4, 4 + n))) as Omit<PendingUpload, 'frame'>;
  if (typeof meta.idempotencyKey !== 'string' || typeof meta.taskId !== 'string')
    throw new Error('pending upload lacks its key');
  decodeFrame(bytes.subarray(4 + n), FRAME_KIND_UPDATE);
  return { ...meta, frame: bytes.slice(4 + n) };
}
