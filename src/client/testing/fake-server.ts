/**
 * A small in-process implementation of the v1 protocol (node:http) for testing the client SDK
 * without the real server: enrollment, bearer tokens and revocation, admission with `wait` pacing,
 * model frames per version, update frames with assignment, shape, finiteness and idempotency checks,
 * and a FedBuff-style step (example-weighted mean of K deltas). Faults can be queued per route:
 * an error status, a connection reset before handling, or a reset AFTER the update was applied (the
 * case idempotency keys exist for). Test support only; not part of the SDK.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type ApiErrorCode,
  BINARY_CONTENT_TYPE,
  type CheckinResponse,
  decodeFrame,
  encodeFrame,
  FRAME_KIND_MODEL,
  FRAME_KIND_UPDATE,
  FrameError,
  ROUTES,
  routePath,
  type StatusResponse,
  type TrainPlan,
  type UpdateHeader,
  type UpdateResponse,
} from '../../server/protocol.ts';

export type FakeFault =
  | {
      readonly kind: 'status';
      readonly status: number;
      readonly code: ApiErrorCode;
      readonly retryAfterMs?: number;
    }
  /** Destroy the socket without answering, before handling the request. */
  | { readonly kind: 'reset' }
  /** Handle the request fully (apply the update), then destroy the socket instead of answering. */
  | { readonly kind: 'reset-after-apply' };

export type FakeRoute = 'register' | 'checkin' | 'model' | 'update';

export interface FakeServerOptions {
  readonly taskId?: string;
  readonly initialParams: Float32Array;
  readonly plan: TrainPlan;
  readonly bufferSize?: number;
  readonly concurrency?: number;
  readonly waitMs?: number;
  readonly enrollmentKey?: string;
  /** The task finishes for good (as a spent privacy budget does) once it reaches this version. */
  readonly finishAtVersion?: number;
}

export interface AppliedUpdate {
  readonly deviceId: string;
  readonly idempotencyKey: string;
  readonly baseVersion: number;
  readonly numExamples: number;
  readonly delta: Float32Array;
}

class Reply extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export class FakeServer {
  readonly taskId: string;
  readonly enrollmentKey: string;
  readonly applied: AppliedUpdate[] = [];
  readonly requests: { route: string; status: number; idempotencyKey?: string }[] = [];
  version = 0;
  private readonly versions = new Map<number, Float32Array>();
  private readonly tokens = new Map<string, string>();
  private readonly revoked = new Set<string>();
  private readonly assignments = new Map<string, { deviceId: string; version: number; deadline: number }>();
  private readonly responses = new Map<string, UpdateResponse>();
  private readonly faults = new Map<FakeRoute, FakeFault[]>();
  private buffer: Float32Array;
  private bufferExamples = 0;
  private bufferCount = 0;
  private readonly server: Server;
  private readonly options: FakeServerOptions;
  url = '';

  constructor(options: FakeServerOptions) {
    this.options = options;
    this.taskId = options.taskId ?? 'fake-task';
    this.enrollmentKey = options.enrollmentKey ?? randomBytes(12).toString('hex');
    this.versions.set(0, options.initialParams.slice());
    this.buffer = new Float32Array(options.initialParams.length);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: { code: 'internal', message: String(e) } }));
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  params(version = this.version): Float32Array {
    const p = this.versions.get(version);
    if (p === undefined) throw new Error(`no version ${version}`);
    return p;
  }

  inject(route: FakeRoute, ...faults: FakeFault[]): void {
    this.faults.set(route, [...(this.faults.get(route) ?? []), ...faults]);
  }

  revoke(deviceId: string): void {
    this.revoked.add(deviceId);
  }

  get inFlight(): number {
    const now = Date.now();
    let n = 0;
    for (const a of this.assignments.values()) if (a.deadline > now) n++;
    return n;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const route: FakeRoute | null =
      req.method === 'POST' && url.pathname === ROUTES.register
        ? 'register'
        : req.method === 'POST' && url.pathname === ROUTES.checkin
          ? 'checkin'
          : req.method === 'GET' && /^\/v1\/tasks\/[^/]+\/models\/\d+$/.test(url.pathname)
            ? 'model'
            : req.method === 'POST' && /^\/v1\/tasks\/[^/]+\/updates$/.test(url.pathname)
              ? 'update'
              : null;
    const key = req.headers['idempotency-key'];
    const body = await readBody(req);
    const fault = route === null ? undefined : this.faults.get(route)?.shift();
    const log = (status: number): void => {
      this.requests.push({
        route: route ?? url.pathname,
        status,
        ...(typeof key === 'string' ? { idempotencyKey: key } : {}),
      });
    };
    if (fault?.kind === 'reset') {
      log(0);
      req.socket.destroy();
      return;
    }
    try {
      if (fault?.kind === 'status')
        throw new Reply(fault.status, fault.code, 'injected fault', fault.retryAfterMs);
      let out: { type: string; body: string | Uint8Array };
      switch (route) {
        case 'register':
          out = json(this.register(body));
          break;
        case 'checkin':
          out = json(this.checkin(req));
          break;
        case 'model':
          out = { type: BINARY_CONTENT_TYPE, body: this.model(req, url.pathname) };
          break;
        case 'update':
          out = json(this.update(req, url.pathname, body));
          break;
        default:
          if (req.method === 'GET' && url.pathname === ROUTES.status) {
            out = json(this.status());
            break;
          }
          throw new Reply(404, 'not_found', `no route ${req.method} ${url.pathname}`);
      }
      if (fault?.kind === 'reset-after-apply') {
        log(0);
        req.socket.destroy();
        return;
      }
      log(200);
      res.setHeader('content-type', out.type);
      res.end(out.body);
    } catch (e) {
      if (!(e instanceof Reply)) throw e;
      log(e.status);
      res.statusCode = e.status;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          error: {
            code: e.code,
            message: e.message,
            ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
          },
        }),
      );
    }
  }

  private device(req: IncomingMessage): string {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const deviceId = m?.[1] === undefined ? undefined : this.tokens.get(m[1]);
    if (deviceId === undefined) throw new Reply(401, 'unauthenticated', 'missing or unknown token');
    if (this.revoked.has(deviceId)) throw new Reply(401, 'revoked', 'token revoked');
    return deviceId;
  }

  private register(body: Buffer): { deviceId: string; token: string } {
    let key: unknown;
    try {
      key = (JSON.parse(body.toString('utf8')) as { enrollmentKey?: unknown }).enrollmentKey;
    } catch {
      throw new Reply(400, 'bad_request', 'body is not JSON');
    }
    if (key !== this.enrollmentKey) throw new Reply(401, 'unauthenticated', 'wrong enrollment key');
    const deviceId = randomUUID();
    const token = randomBytes(24).toString('base64url');
    this.tokens.set(token, deviceId);
    return { deviceId, token };
  }

  private isFinished(): boolean {
    return this.version >= (this.options.finishAtVersion ?? Number.POSITIVE_INFINITY);
  }

  private checkin(req: IncomingMessage): CheckinResponse {
    const deviceId = this.device(req);
    if (this.isFinished()) {
      const finished = {
        taskId: this.taskId,
        reason: 'privacy_budget',
        epsilon: 1,
        delta: 1e-5,
        steps: this.version,
        budgetEpsilon: 1,
      } as const;
      return {
        action: 'wait',
        retryAfterMs: 3_600_000,
        reason: 'finished',
        finished: [finished],
        allFinished: true,
      };
    }
    if (this.inFlight >= (this.options.concurrency ?? Number.POSITIVE_INFINITY))
      return { action: 'wait', retryAfterMs: this.options.waitMs ?? 50, reason: 'at target concurrency' };
    const assignmentId = randomUUID();
    const deadline = Date.now() + 60_000;
    this.assignments.set(assignmentId, { deviceId, version: this.version, deadline });
    return {
      action: 'train',
      taskId: this.taskId,
      assignmentId,
      version: this.version,
      modelUrl: routePath(ROUTES.model, { taskId: this.taskId, version: this.version }),
      plan: this.options.plan,
      deadline,
    };
  }

  private model(req: IncomingMessage, path: string): Uint8Array {
    this.device(req);
    const [, , , taskId, , v] = path.split('/');
    if (taskId !== this.taskId) throw new Reply(404, 'not_found', `no task ${taskId}`);
    const params = this.versions.get(Number(v));
    if (params === undefined) throw new Reply(404, 'unknown_version', `no version ${v}`);
    return encodeFrame(FRAME_KIND_MODEL, { taskId: this.taskId, version: Number(v) }, params);
  }

  private update(req: IncomingMessage, path: string, body: Buffer): UpdateResponse {
    const deviceId = this.device(req);
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || key.length === 0)
      throw new Reply(400, 'bad_request', 'Idempotency-Key required');
    const replay = this.responses.get(key);
    if (replay !== undefined) return { ...replay, duplicate: true };
    if (path.split('/')[3] !== this.taskId) throw new Reply(404, 'not_found', 'unknown task');
    if (this.isFinished()) throw new Reply(410, 'finished', 'the task is finished');
    let frame: ReturnType<typeof decodeFrame<UpdateHeader>>;
    try {
      frame = decodeFrame<UpdateHeader>(new Uint8Array(body), FRAME_KIND_UPDATE);
    } catch (e) {
      if (e instanceof FrameError) throw new Reply(400, 'bad_request', e.message);
      throw e;
    }
    const h = frame.header;
    const a = this.assignments.get(h.assignmentId);
    if (a === undefined || a.deviceId !== deviceId)
      throw new Reply(409, 'not_assigned', 'no open assignment');
    if (frame.floats.length !== this.buffer.length) throw new Reply(400, 'shape', 'wrong length');
    if (!Number.isFinite(h.numExamples) || !frame.floats.every(Number.isFinite))
      throw new Reply(400, 'non_finite', 'NaN/Inf');
    this.assignments.delete(h.assignmentId);
    this.applied.push({
      deviceId,
      idempotencyKey: key,
      baseVersion: h.baseVersion,
      numExamples: h.numExamples,
      delta: frame.floats,
    });
    for (let i = 0; i < this.buffer.length; i++)
      this.buffer[i] = (this.buffer[i] as number) + h.numExamples * (frame.floats[i] as number);
    this.bufferExamples += h.numExamples;
    this.bufferCount++;
    const staleness = this.version - h.baseVersion;
    if (this.bufferCount >= (this.options.bufferSize ?? 1)) {
      const next = this.params().slice();
      for (let i = 0; i < next.length; i++)
        next[i] = (next[i] as number) - (this.buffer[i] as number) / Math.max(1, this.bufferExamples);
      this.version++;
      this.versions.set(this.version, next);
      this.buffer.fill(0);
      this.bufferExamples = 0;
      this.bufferCount = 0;
    }
    const response: UpdateResponse = { accepted: true, duplicate: false, staleness, version: this.version };
    this.responses.set(key, response);
    return response;
  }

  private status(): StatusResponse {
    return {
      tasks: [
        {
          taskId: this.taskId,
          version: this.version,
          inFlight: this.inFlight,
          accepted: this.applied.length,
          rejected: {},
        },
      ],
    };
  }
}

function json(value: unknown): { type: string; body: string } {
  return { type: 'application/json', body: JSON.stringify(value) };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
