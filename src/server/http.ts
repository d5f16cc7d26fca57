/**
 * HTTP transport of the server roles (fastify; update uploads straight from node:http, see
 * serveUpload): JSON for control messages, binary frames for
 * models and updates, server-sent events for push. Every refusal is a typed 4xx body
 * `{error:{code,message}}`; tokens are checked before a body is read; bodies have a size limit and
 * a deadline (slow senders get 408 and the connection is closed).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { AdmissionCounter } from './admission.ts';
import type { Aggregator } from './aggregator.ts';
import type { DeviceAuth } from './auth.ts';
import { BodyPool } from './bodies.ts';
import type { ServerEvent, TaskCoordinator } from './coordinator.ts';
import { ApiError } from './errors.ts';
import { BINARY_CONTENT_TYPE, type MetricsResponse, ROUTES, type StatusResponse } from './protocol.ts';
import { parseCheckinRequest, type Selector } from './selector.ts';
import type { Storage } from './storage/types.ts';

export interface HttpLimits {
  /** Largest accepted update frame in bytes. */
  readonly maxUpdateBytes: number;
  /** Largest JSON body. */
  readonly maxJsonBytes: number;
  /** A request body must arrive completely within this. */
  readonly bodyTimeoutMs: number;
  /** An idle connection is closed after this. */
  readonly idleTimeoutMs: number;
}

export interface HttpRoles {
  readonly auth: DeviceAuth;
  readonly storage: Storage;
  readonly admission: AdmissionCounter;
  readonly selector: Selector | null;
  readonly aggregator: Aggregator | null;
  readonly coordinators: ReadonlyMap<string, TaskCoordinator>;
  /** The dashboard page; null when this process serves none. */
  readonly dashboardHtml: (() => string) | null;
  readonly log: (message: string) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    deviceId?: string;
  }
}

/** Reads a request body into one buffer (exactly sized when Content-Length is given), with a size
 *  limit and a deadline. Refusals leave the rest of the body unread; the caller closes the socket.
 *  With `pool`, a body of declared length is read into a block lent from it: `onLent` gets the
 *  block's release once the body arrived whole (a refused body's block is returned here). */
export function readBody(
  stream: IncomingMessage,
  limit: number,
  timeoutMs: number,
  pool?: BodyPool,
  onLent?: (release: () => void) => void,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declaredHeader = stream.headers['content-length'];
    const declared = declaredHeader === undefined ? null : Number(declaredHeader);
    if (declared !== null && !(Number.isSafeInteger(declared) && declared >= 0)) {
      reject(new ApiError('bad_request', 'invalid Content-Length'));
      return;
    }
    if (declared !== null && declared > limit) {
      reject(new ApiError('payload_too_large', `body of ${declared} bytes exceeds the limit of ${limit}`));
      return;
    }
    const lent = declared === null || pool === undefined ? null : pool.lend(declared);
    const exact = declared === null ? null : (lent?.bytes ?? Buffer.allocUnsafeSlow(declared));
    const chunks: Buffer[] = [];
    let received = 0;
    const finish = (error: ApiError | null) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('aborted', onAborted);
      if (error !== null) {
        stream.pause();
        lent?.release();
        reject(error);
      } else if (exact !== null) {
        if (lent !== null) onLent?.(lent.release);
        resolve(exact);
      } else resolve(Buffer.concat(chunks, received));
    };
    const onData = (chunk: Buffer) => {
      if (received + chunk.length > (declared ?? limit)) {
        finish(
          declared === null
            ? new ApiError('payload_too_large', `body exceeds the limit of ${limit} bytes`)
            : new ApiError('bad_request', 'body is longer than its Content-Length'),
        );
        return;
      }
      // A lent block is shared memory: its own write avoids V8's byte-by-byte copy (see LentBody.write).
      if (lent !== null) lent.write(chunk, received);
      else if (exact !== null) chunk.copy(exact, received);
      else chunks.push(chunk);
      received += chunk.length;
    };
    const onEnd = () => {
      if (declared !== null && received !== declared)
        finish(new ApiError('bad_request', `body ended after ${received} of ${declared} bytes`));
      else finish(null);
    };
    const onError = () => finish(new ApiError('bad_request', 'request body stream failed'));
    const onAborted = () => finish(new ApiError('bad_request', 'request aborted'));
    const timer = setTimeout(
      () => finish(new ApiError('timeout', `request body not received within ${timeoutMs} ms`)),
      timeoutMs,
    );
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('aborted', onAborted);
  });
}

/** Maps any error to the typed API error sent to the client. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const e = error as { code?: string; statusCode?: number; message?: string };
  const message = e.message ?? 'error';
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new ApiError('payload_too_large', message);
  // StorageError / ScaleoutError: a backend (database, Redis) is unreachable or lost its state.
  if (e.code === 'BACKEND_UNAVAILABLE' || e.code === 'STATE_LOST')
    return new ApiError('unavailable', 'a backend is unavailable; retry shortly', 1000);
  if (e.statusCode === 413) return new ApiError('payload_too_large', message);
  if (e.statusCode === 408) return new ApiError('timeout', message);
  if (e.statusCode === 404) return new ApiError('not_found', message);
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500)
    return new ApiError('bad_request', message);
  return new ApiError('internal', 'internal server error');
}

/** Headers of an error reply besides its type: a refusal before the whole body arrived does not read
 *  the rest and drops the connection after replying; a retryable one says when to retry. */
function errorHeaders(request: IncomingMessage, error: ApiError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!request.complete) headers.connection = 'close';
  if (error.retryAfterMs !== undefined) headers['retry-after'] = String(Math.ceil(error.retryAfterMs / 1000));
  return headers;
}

function sendError(request: FastifyRequest, reply: FastifyReply, error: ApiError): void {
  void reply
    .code(error.status)
    .headers(errorHeaders(request.raw, error))
    .type('application/json')
    .send(error.body());
}

/** The update route's path, with or without a query string (fastify's routing of ROUTES.update). */
export const UPLOAD_PATH = /^\/v1\/tasks\/([^/?#]+)\/updates(?:\?.*)?$/;

/**
 * POST ROUTES.update served straight from node:http, not through fastify: an upload's event-loop
 * time is dominated by its 400 kB, but fastify's per-request objects, hooks, content-type parser
 * plumbing and promise layers still cost ~0.05 ms of it (~10% of the event loop per upload at
 * 64 in flight, measured side by side with scripts/profile-ingest.ts; README "Production server").
 * Same contract as the fastify routes: the bearer token is checked before the body is read, the
 * body must be BINARY_CONTENT_TYPE within the size limit and deadline, every refusal is the typed
 * JSON error with the same headers, and the pooled block goes back once the update is handled.
 */
function serveUpload(
  request: IncomingMessage,
  response: ServerResponse,
  encodedTaskId: string,
  ctx: {
    readonly roles: HttpRoles;
    readonly aggregator: Aggregator;
    readonly limits: HttpLimits;
    readonly bodies: BodyPool;
    readonly closing: () => boolean;
  },
): void {
  const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    const json = JSON.stringify(body);
    response.writeHead(status, {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(json)),
    });
    response.end(json);
  };
  const handle = async () => {
    if (ctx.closing()) throw new ApiError('unavailable', 'the server is shutting down; retry shortly', 1000);
    const deviceId = await ctx.roles.auth.authenticate(request.headers.authorization);
    let taskId: string;
    try {
      taskId = decodeURIComponent(encodedTaskId);
    } catch {
      throw new ApiError('bad_request', 'malformed task id in the URL');
    }
    const type = String(request.headers['content-type'] ?? '')
      .split(';')[0]
      ?.trim()
      .toLowerCase();
    if (type !== BINARY_CONTENT_TYPE)
      throw new ApiError('bad_request', `updates must be sent as ${BINARY_CONTENT_TYPE}`);
    let release: (() => void) | undefined;
    const body = await readBody(
      request,
      ctx.limits.maxUpdateBytes,
      ctx.limits.bodyTimeoutMs,
      ctx.bodies,
      (r) => {
        release = r;
      },
    );
    const key = request.headers['idempotency-key'];
    try {
      return await ctx.aggregator.submit(
        deviceId,
        taskId,
        typeof key === 'string' ? key : undefined,
        body,
        release,
      );
    } finally {
      // Settled: the fold read the delta and the journal append (the writer thread) is done with
      // it; no served strategy keeps it (see bodies.ts). The block can take the next body (if a
      // folded commit's coordinator did not give it back right after the fold already).
      release?.();
    }
  };
  handle()
    .then(
      (result) => reply(200, result),
      (error: unknown) => {
        const api = toApiError(error);
        if (api.code === 'internal')
          ctx.roles.log(`internal error on POST ${request.url}: ${(error as Error).stack ?? error}`);
        reply(api.status, api.body(), errorHeaders(request, api));
      },
    )
    // Writing the answer failed (the socket is gone): nothing is left to tell the client.
    .catch((error: unknown) => {
      ctx.roles.log(`could not answer POST ${request.url}: ${(error as Error).message}`);
      response.destroy();
    });
}

function stringParam(params: unknown, name: string): string {
  const value = (params as Record<string, unknown>)[name];
  if (typeof value !== 'string') throw new ApiError('bad_request', `missing ${name}`);
  return value;
}

export function buildHttp(roles: HttpRoles, limits: HttpLimits): FastifyInstance {
  let closing = false;
  const aggregator = roles.aggregator;
  const upload =
    aggregator === null
      ? null
      : { roles, aggregator, limits, bodies: new BodyPool(), closing: () => closing };
  const app = Fastify({
    logger: false,
    bodyLimit: limits.maxJsonBytes,
    forceCloseConnections: true,
    return503OnClosing: true,
    // Our own node:http server (fastify applies no timeouts to one it did not create): uploads go to
    // serveUpload, everything else to fastify's router.
    serverFactory: (handler) => {
      const server = createServer((request, response) => {
        const path =
          upload !== null && request.method === 'POST' ? UPLOAD_PATH.exec(request.url ?? '') : null;
        if (upload !== null && path !== null) serveUpload(request, response, path[1] as string, upload);
        else handler(request, response);
      });
      server.keepAliveTimeout = Math.min(limits.idleTimeoutMs, 65_000);
      server.requestTimeout = limits.bodyTimeoutMs * 2;
      server.setTimeout(limits.idleTimeoutMs);
      return server;
    },
  });
  app.addHook('preClose', async () => {
    closing = true;
  });
  const { auth } = roles;

  // Binary bodies on other routes (which all refuse them) are read without the pool.
  app.addContentTypeParser(BINARY_CONTENT_TYPE, (_request, payload, done) => {
    readBody(payload, limits.maxUpdateBytes, limits.bodyTimeoutMs).then(
      (body) => done(null, body),
      (error: Error) => done(error, undefined),
    );
  });

  app.setErrorHandler((error, request, reply) => {
    const api = toApiError(error);
    if (api.code === 'internal')
      roles.log(`internal error on ${request.method} ${request.url}: ${(error as Error).stack ?? error}`);
    sendError(request, reply, api);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(
      request,
      reply,
      new ApiError('not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
    );
  });

  /** Device routes: the bearer token is checked before the body is read. */
  const device = {
    onRequest: async (request: FastifyRequest) => {
      request.deviceId = await auth.authenticate(request.headers.authorization);
    },
  };
  const deviceOf = (request: FastifyRequest): string => {
    if (request.deviceId === undefined) throw new ApiError('unauthenticated', 'not authenticated');
    return request.deviceId;
  };
  const coordinatorOf = (taskId: string): TaskCoordinator => {
    const coordinator = roles.coordinators.get(taskId);
    if (coordinator === undefined) throw new ApiError('not_found', `unknown task ${taskId}`);
    return coordinator;
  };

  app.get(ROUTES.health, async () => ({ ok: true }));

  app.post(ROUTES.register, async (request, reply) => {
    const body = request.body as { enrollmentKey?: unknown } | null;
    const registered = await auth.register(body?.enrollmentKey);
    return reply.code(201).send(registered);
  });

  app.post(ROUTES.revoke, async (request) => {
    await auth.revoke(request.headers.authorization, stringParam(request.params, 'deviceId'));
    return { revoked: true };
  });

  const selector = roles.selector;
  if (selector !== null)
    app.post(ROUTES.checkin, device, async (request) =>
      selector.checkin(deviceOf(request), parseCheckinRequest(request.body)),
    );

  if (roles.coordinators.size > 0) {
    app.get(ROUTES.model, device, async (request, reply) => {
      const coordinator = coordinatorOf(stringParam(request.params, 'taskId'));
      const raw = stringParam(request.params, 'version');
      const version = raw === 'latest' ? coordinator.version : Number(raw);
      if (!(Number.isInteger(version) && version >= 0))
        throw new ApiError('bad_request', `bad version ${raw}`);
      if (version > coordinator.version)
        throw new ApiError('unknown_version', `version ${version} does not exist yet`);
      const frame = coordinator.modelFrame(version);
      if (frame === null)
        throw new ApiError(
          'not_found',
          `version ${version} is no longer served (current ${coordinator.version}); check in again`,
        );
      let bytes = frame;
      if (/\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
        const gzipped = await coordinator.modelFrameGzip(version);
        if (gzipped !== null) {
          bytes = gzipped;
          reply.header('content-encoding', 'gzip');
        }
      }
      reply.header('vary', 'accept-encoding');
      reply.header('cache-control', 'private, max-age=31536000, immutable');
      return reply
        .type(BINARY_CONTENT_TYPE)
        .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    });
  }

  app.get(ROUTES.status, async (): Promise<StatusResponse> => {
    const tasks = [];
    for (const c of roles.coordinators.values()) {
      const finished = c.finished();
      tasks.push({
        taskId: c.taskId,
        version: c.version,
        inFlight: await roles.admission.inFlight(c.taskId),
        accepted: c.counts.accepted,
        rejected: await c.rejectedTotals(),
        ...(finished === null ? {} : { finished }),
      });
    }
    return { tasks };
  });

  app.get(ROUTES.metrics, async (request): Promise<MetricsResponse> => {
    const query = request.query as { taskId?: string; limit?: string };
    const taskId = query.taskId ?? roles.coordinators.keys().next().value;
    if (taskId === undefined || (await roles.storage.getTask(taskId)) === null)
      throw new ApiError('not_found', `unknown task ${String(taskId)}`);
    const limit = query.limit === undefined ? 500 : Number(query.limit);
    if (!(Number.isInteger(limit) && limit > 0 && limit <= 10_000))
      throw new ApiError('bad_request', 'limit must be an integer in [1, 10000]');
    return { taskId, metrics: await roles.storage.metrics(taskId, limit) };
  });

  const streams = new Set<() => void>();
  app.get(ROUTES.events, (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const send = (event: ServerEvent) => {
      // A client that stopped reading is dropped rather than buffered without bound.
      if (res.writableLength > 1 << 20) {
        cleanup();
        res.destroy();
        return;
      }
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
    };
    const unsubscribe: Array<() => void> = [];
    for (const c of roles.coordinators.values()) {
      send({ type: 'version', data: { taskId: c.taskId, version: c.version, at: Date.now() } });
      unsubscribe.push(c.subscribe(send));
    }
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const cleanup = () => {
      clearInterval(heartbeat);
      for (const u of unsubscribe) u();
      streams.delete(end);
    };
    const end = () => {
      cleanup();
      res.end();
    };
    streams.add(end);
    request.raw.on('close', cleanup);
  });
  app.addHook('onClose', async () => {
    for (const end of [...streams]) end();
  });

  const dashboard = roles.dashboardHtml;
  app.get('/', async (_request, reply) => {
    if (dashboard === null) throw new ApiError('not_found', 'no dashboard in this build');
    return reply.type('text/html; charset=utf-8').send(dashboard());
  });

  return app;
}
