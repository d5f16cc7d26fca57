/**
 * Wire contract between the Orchard server and its clients (API v1). Shared by `src/server` and
 * `src/client`, so it has no Node-only imports: it runs in browsers too.
 *
 * Float payloads (models, updates) travel as binary frames, never JSON arrays:
 *
 *   offset 0  4 bytes  magic "ORCH"
 *          4  u8       frame format version (1)
 *          5  u8       kind (1 = model, 2 = update)
 *          6  u16 LE   reserved, 0
 *          8  u32 LE   header length H (bytes of UTF-8 JSON)
 *         12  H bytes  header JSON (kind-specific fields, see ModelHeader / UpdateHeader)
 *          …  0–3 zero bytes so the floats start at a multiple of 4
 *          …  u32 LE   float count N
 *          …  N × f32 LE
 *
 * Every error response has the body `{ "error": { "code": ApiErrorCode, "message": string } }`.
 */

export const API_VERSION = 'v1';
export const FRAME_MAGIC = 0x4843524f; // "ORCH" read as little-endian u32
export const FRAME_FORMAT = 1;
export const FRAME_KIND_MODEL = 1;
export const FRAME_KIND_UPDATE = 2;
export const BINARY_CONTENT_TYPE = 'application/vnd.orchard.frame';

/** Routes, relative to the server origin. */
export const ROUTES = {
  register: '/v1/devices/register', // POST JSON {enrollmentKey} → RegisterResponse (no token needed; the key is the credential)
  checkin: '/v1/checkin', // POST JSON CheckinRequest → CheckinResponse (token)
  model: '/v1/tasks/:taskId/models/:version', // GET → model frame (token)
  update: '/v1/tasks/:taskId/updates', // POST update frame, header Idempotency-Key (token) → UpdateResponse
  events: '/v1/events', // GET server-sent events: `version`, `metrics` (token or dashboard)
  status: '/v1/status', // GET JSON StatusResponse (public, read-only)
  metrics: '/v1/metrics', // GET JSON MetricsResponse, query ?taskId=&limit= (public, read-only)
  revoke: '/v1/admin/devices/:deviceId/revoke', // POST (admin token)
  health: '/healthz',
} as const;

export type ApiErrorCode =
  | 'bad_request' // malformed JSON / frame / headers
  | 'unauthenticated' // missing or unknown token
  | 'revoked' // token was revoked
  | 'forbidden' // authenticated but not allowed (e.g. not the assigned device)
  | 'not_found' // unknown task / version / route
  | 'payload_too_large'
  | 'shape' // update length differs from the model
  | 'non_finite' // NaN/Inf in update or numExamples
  | 'norm_bound' // update norm above the task's bound
  | 'stale' // staleness above the task's limit
  | 'unknown_version'
  | 'not_assigned' // no open assignment for this device/task
  | 'duplicate' // idempotency key already applied (the response still carries the original result)
  | 'rate_limited' // check-in too soon; see retryAfterMs
  | 'timeout' // request body too slow
  | 'unavailable' // server not ready (recovering, lost its lease)
  | 'finished' // the task stopped for good (its privacy budget is spent); nothing was stored
  | 'internal';

export interface ApiErrorBody {
  readonly error: { readonly code: ApiErrorCode; readonly message: string; readonly retryAfterMs?: number };
}

export interface RegisterResponse {
  readonly deviceId: string;
  readonly token: string;
}

export interface CheckinRequest {
  /** Free-form device facts used for eligibility (e.g. {platform:'node', charging:true}). */
  readonly attributes?: Readonly<Record<string, string | number | boolean>>;
}

/** Training recipe the client runs on its own data (mirrors the foundation's LocalTrainSpec). */
export interface TrainPlan {
  readonly model: unknown; // ModelSpec from src/nn/spec.ts
  readonly localTrain: unknown; // LocalTrainSpec from src/fl/spec.ts
  /** Model input shape for createModel (ModelInput from src/nn/index.ts). */
  readonly modelInput?: {
    readonly inputKind: 'dense' | 'bags';
    readonly inputDim: number;
    readonly numClasses: number;
  };
  /** The task's DatasetSpec (src/data/spec.ts), for simulated fleets that hold a share of it. */
  readonly dataset?: unknown;
  /** The task's seed (dataset partition and initial parameters derive from it). */
  readonly seed?: number;
}

export type CheckinResponse =
  | {
      readonly action: 'train';
      readonly taskId: string;
      readonly assignmentId: string;
      readonly version: number;
      /** Relative URL of the model frame for `version`. */
      readonly modelUrl: string;
      readonly plan: TrainPlan;
      /** Upload by this time (ms since epoch) or the assignment lapses. */
      readonly deadline: number;
    }
  | {
      readonly action: 'wait';
      /** Come back no sooner than this. */
      readonly retryAfterMs: number;
      readonly reason: string;
      /**
       * Eligible tasks that stopped for good (no assignment will ever come from them); present only
       * when some did. When every eligible task finished, `reason` says so and the wait is long.
       */
      readonly finished?: readonly FinishedTask[];
      /** True when every task the device is eligible for finished: no work will ever come. */
      readonly allFinished?: boolean;
    };

/** A task that stopped for good: its privacy budget is spent (one more noised step would exceed it). */
export interface FinishedTask {
  readonly taskId: string;
  readonly reason: 'privacy_budget';
  /** ε, δ and noised steps spent; `budgetEpsilon` is the configured budget. */
  readonly epsilon: number;
  readonly delta: number;
  readonly steps: number;
  readonly budgetEpsilon: number;
}

/** The one-line reason a finished task gives (check-in waits, 410 answers). */
export function describeFinished(f: FinishedTask): string {
  return `task ${f.taskId} is finished: its privacy budget is spent (ε = ${f.epsilon.toPrecision(4)} after ${f.steps} steps, budget ${f.budgetEpsilon}; one more step would exceed it)`;
}

export interface ModelHeader {
  readonly taskId: string;
  readonly version: number;
}

export interface UpdateHeader {
  readonly taskId: string;
  readonly assignmentId: string;
  readonly baseVersion: number;
  readonly numExamples: number;
  readonly trainLoss?: number;
}

export interface UpdateResponse {
  readonly accepted: true;
  /** True when this very request was a replay of an already-applied idempotency key. */
  readonly duplicate: boolean;
  readonly staleness: number;
  /** Model version after the server handled the update. */
  readonly version: number;
}

export interface StatusResponse {
  readonly tasks: readonly {
    readonly taskId: string;
    readonly version: number;
    readonly inFlight: number;
    readonly accepted: number;
    readonly rejected: Readonly<Record<string, number>>;
    /** Present once the task stopped for good (its privacy budget is spent). */
    readonly finished?: FinishedTask;
  }[];
}

/** One metrics record per reported version (see `MetricRecord` in storage/types.ts). */
export interface MetricPoint {
  readonly taskId: string;
  readonly version: number;
  /** ms since epoch. */
  readonly at: number;
  /** accuracy?, loss? (when evaluated), updatesPerSecond, staleness (mean since the last point),
   *  inFlight, accepted (total), rejected ({reason: total}). */
  readonly values: Readonly<Record<string, unknown>>;
}

export interface MetricsResponse {
  readonly taskId: string;
  readonly metrics: readonly MetricPoint[];
}

/**
 * Server-sent events on ROUTES.events (`event: <name>`, `data: <JSON>`):
 *   version  {taskId, version, at}   a new model version is published (also sent once per task on connect)
 *   metrics  MetricPoint             a new metrics record
 */
export interface VersionEvent {
  readonly taskId: string;
  readonly version: number;
  readonly at: number;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Where a frame's floats start, given its header's byte length (the u32 at byte 8): after the
 *  12-byte prefix and the header, padding to a multiple of 4, then the u32 float count. */
export function frameFloatStart(headerLength: number): number {
  return (12 + headerLength + 3 + 4) & ~3;
}

/**
 * Encodes a frame. The floats are copied once into the output buffer.
 * `floats`: one array, or parts written one after another (saves the caller concatenating them).
 * `into`: memory to reuse when it is large enough (the frame is then a view of its start), for a
 * caller that encodes the same size again and again and hands each frame on before the next.
 */
export function encodeFrame(
  kind: number,
  header: object,
  floats: Float32Array | readonly Float32Array[],
  into?: Uint8Array,
): Uint8Array {
  const parts = floats instanceof Float32Array ? [floats] : floats;
  const count = parts.reduce((n, p) => n + p.length, 0);
  const json = encoder.encode(JSON.stringify(header));
  const floatStart = frameFloatStart(json.length);
  const countAt = floatStart - 4;
  const length = floatStart + count * 4;
  // Reused memory must start 4-aligned, like a fresh buffer, for the float view below.
  const out =
    into !== undefined && into.length >= length && into.byteOffset % 4 === 0
      ? into.subarray(0, length)
      : new Uint8Array(length);
  const view = new DataView(out.buffer, out.byteOffset, length);
  view.setUint32(0, FRAME_MAGIC, true);
  out[4] = FRAME_FORMAT;
  out[5] = kind;
  view.setUint16(6, 0, true);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  // The padding between the header and the floats: zero, as in a fresh buffer.
  out.fill(0, 12 + json.length, countAt);
  view.setUint32(countAt, count, true);
  const target = new Float32Array(out.buffer, out.byteOffset + floatStart, count);
  let at = 0;
  for (const p of parts) {
    target.set(p, at);
    at += p.length;
  }
  return out;
}

export interface DecodedFrame<H> {
  readonly kind: number;
  readonly header: H;
  readonly floats: Float32Array;
}

/**
 * Decodes and bounds-checks a frame; throws FrameError on anything malformed. The floats are
 * copied, unless `copy: false` and they are 4-byte aligned in memory: then they are a view of
 * `bytes` (the caller must not reuse the buffer while the floats are in use).
 */
export function decodeFrame<H = unknown>(
  bytes: Uint8Array,
  expectedKind?: number,
  options?: { readonly copy?: boolean },
): DecodedFrame<H> {
  if (bytes.length < 16)
    throw new FrameError(`frame of ${bytes.length} bytes is shorter than the 16-byte minimum`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== FRAME_MAGIC) throw new FrameError('not an Orchard frame (bad magic)');
  if (bytes[4] !== FRAME_FORMAT) throw new FrameError(`unsupported frame format ${bytes[4]}`);
  const kind = bytes[5] as number;
  if (expectedKind !== undefined && kind !== expectedKind)
    throw new FrameError(`expected frame kind ${expectedKind}, got ${kind}`);
  const headerLength = view.getUint32(8, true);
  const headerEnd = 12 + headerLength;
  const floatStart = frameFloatStart(headerLength);
  if (floatStart > bytes.length) throw new FrameError('frame header runs past the end of the body');
  let header: H;
  try {
    header = JSON.parse(decoder.decode(bytes.subarray(12, headerEnd))) as H;
  } catch {
    throw new FrameError('frame header is not valid UTF-8 JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    throw new FrameError('frame header must be a JSON object');
  const count = view.getUint32(floatStart - 4, true);
  if (floatStart + count * 4 !== bytes.length)
    throw new FrameError(
      `frame declares ${count} floats (${count * 4} bytes) but carries ${bytes.length - floatStart}`,
    );
  if (options?.copy === false && (bytes.byteOffset + floatStart) % 4 === 0)
    return { kind, header, floats: new Float32Array(bytes.buffer, bytes.byteOffset + floatStart, count) };
  const floats = new Float32Array(count);
  new Uint8Array(floats.buffer).set(bytes.subarray(floatStart));
  return { kind, header, floats };
}

/** Fills a route template: routePath(ROUTES.model, {taskId:'t', version:3}) → '/v1/tasks/t/models/3'. */
export function routePath(template: string, params: Readonly<Record<string, string | number>>): string {
  return template.replace(/:([a-zA-Z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`route ${template} needs parameter ${name}`);
    return encodeURIComponent(String(value));
  });
}
