/**
 * `orchard guard serve`: an HTTP moderation endpoint in the shape of OpenAI's moderations API
 * (see moderations.ts for the request, response and category mapping).
 *
 * Routes: `POST /v1/moderations` (also `/moderations`), `GET /health` → `{status, model}`. Anything
 * else is a 404/405 in OpenAI's error shape. Bodies must be JSON (`content-type: application/json`)
 * and at most `maxBodyBytes`; a request that takes longer than `requestTimeoutMs` is answered 504 at
 * that deadline (even if the backend ignores the abort) and its guard work aborted; a client that disconnects aborts its work too. At most
 * `maxConcurrentRequests` moderations run at once; the next one gets a 429 instead of a queue slot.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Guard } from '../guard.ts';
import { GuardError } from '../types.ts';
import { errorFor, ModerationRequestError, moderate, parseModerationRequest } from './moderations.ts';

/** [16 MiB: a 10 MiB image as base64 plus JSON] */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Longest delay a Node timer honours; past it setTimeout fires after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface ModerationServerOptions {
  readonly guard: Guard;
  /** Name reported as `model` [the backend's name]. */
  readonly model?: string;
  /** [127.0.0.1] */
  readonly host?: string;
  /** [0: any free port] */
  readonly port?: number;
  /** Largest accepted body [DEFAULT_MAX_BODY_BYTES]. */
  readonly maxBodyBytes?: number;
  readonly maxInputs?: number;
  /** Whole-request deadline in ms, at most 2^31 − 1 [120000]. */
  readonly requestTimeoutMs?: number;
  /** Moderation requests handled at once; more are refused with 429 rather than queued [16]. */
  readonly maxConcurrentRequests?: number;
}

export interface ModerationServer {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, e: ModerationRequestError): void {
  sendJson(res, e.status, e.toJSON());
}

/**
 * The body, or a 413 once an oversized one has been drained (answering before the upload ends would
 * make many clients see a reset instead of the 413). Nothing past the limit is kept in memory.
 */
function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) chunks.length = 0;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (size <= maxBytes) resolve(Buffer.concat(chunks));
      else
        reject(
          new ModerationRequestError(413, `the body is ${size} bytes; the limit is ${maxBytes}`, {
            code: 'body_too_large',
          }),
        );
    });
    req.on('error', reject);
  });
}

function positiveInt(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max)
    throw new GuardError('INVALID_OPTION', `${name} must be an integer in 1–${max}, got ${String(value)}`);
  return value;
}

/** Options are checked before anything listens (GuardError INVALID_OPTION). */
export async function startModerationServer(options: ModerationServerOptions): Promise<ModerationServer> {
  const guard = options.guard;
  if (typeof guard?.checkMany !== 'function')
    throw new GuardError('INVALID_OPTION', 'startModerationServer needs a guard (a Guard)');
  const model = options.model ?? guard.backend.name;
  const maxBodyBytes = positiveInt('maxBodyBytes', options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
  const requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs ?? 120_000, MAX_TIMER_MS);
  const limits =
    options.maxInputs === undefined ? {} : { maxInputs: positiveInt('maxInputs', options.maxInputs) };
  const maxConcurrent = positiveInt('maxConcurrentRequests', options.maxConcurrentRequests ?? 16);
  const port = options.port ?? 0;
  if (!(Number.isSafeInteger(port) && port >= 0 && port <= 65535))
    throw new GuardError('INVALID_OPTION', `port must be an integer in 0–65535, got ${String(port)}`);
  let inFlight = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health') {
      if (req.method !== 'GET')
        throw new ModerationRequestError(405, 'use GET /health', { code: 'method_not_allowed' });
      sendJson(res, 200, { status: 'ok', model });
      return;
    }
    if (path !== '/v1/moderations' && path !== '/moderations')
      throw new ModerationRequestError(404, `no route ${req.method} ${path}; use POST /v1/moderations`, {
        code: 'not_found',
      });
    if (req.method !== 'POST')
      throw new ModerationRequestError(405, `use POST ${path}`, { code: 'method_not_allowed' });
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\b/i.test(type))
      throw new ModerationRequestError(415, `content-type must be application/json, got '${type}'`, {
        code: 'unsupported_media_type',
      });
    const raw = await readBody(req, maxBodyBytes);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw new ModerationRequestError(400, `the body is not valid JSON: ${(e as Error).message}`, {
        code: 'invalid_json',
      });
    }
    const items = parseModerationRequest(body, limits);
    if (inFlight >= maxConcurrent)
      throw new ModerationRequestError(
        429,
        `busy: ${maxConcurrent} moderation requests are already running; retry later`,
        {
          type: 'rate_limit_error',
          code: 'rate_limit_exceeded',
        },
      );
    inFlight++;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), requestTimeoutMs);
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    // The slot stays taken until the guard work has really ended, even when the answer went out at
    // the deadline (a backend that ignores the abort still occupies the model).
    const work = moderate(guard, items, model, abort.signal).finally(() => inFlight--);
    // The deadline holds whether or not the backend honours the abort: answer 504 when it passes.
    let onAbort = () => {};
    const deadline = new Promise<never>((_, reject) => {
      onAbort = () => reject(new GuardError('ABORTED', 'moderation aborted'));
      abort.signal.addEventListener('abort', onAbort, { once: true });
    });
    work.catch(() => {}); // settles after a lost race: already answered
    deadline.catch(() => {});
    try {
      const response = await Promise.race([work, deadline]);
      sendJson(res, 200, response);
    } catch (e) {
      if (abort.signal.aborted && !res.destroyed)
        throw new ModerationRequestError(504, `moderation took longer than ${requestTimeoutMs} ms`, {
          code: 'timeout',
        });
      throw e;
    } finally {
      clearTimeout(timer);
      abort.signal.removeEventListener('abort', onAbort);
      res.off('close', onClose);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err = errorFor(e);
      if (err.status === 500)
        process.stderr.write(
          `orchard guard serve: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
        );
      sendError(res, err);
    });
  });
  server.requestTimeout = requestTimeoutMs + 5_000;
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeIdleConnections();
        server.close(() => resolve());
        // Requests still running get a short grace period, then their sockets go.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}
