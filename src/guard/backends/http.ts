/**
 * JSON over HTTP for the guard's server backends (OpenAI-compatible, Ollama), with every failure
 * mapped to a GuardError code callers can branch on:
 * - connection refused / reset / DNS failure → BACKEND_UNREACHABLE
 * - no complete answer within `timeoutMs` (connect, headers and body together) → BACKEND_TIMEOUT
 * - the caller's AbortSignal fired → ABORTED
 * - a non-2xx status → BackendHttpError (BACKEND_HTTP) with the status and the server's own message
 *   (`{"error":{"message"}}` in OpenAI's shape, `{"error":"..."}` in Ollama's, else the body text)
 * - a 2xx body that is not JSON → BAD_RESPONSE
 */
import type { z } from 'zod';
import { GuardError } from '../types.ts';

export class BackendHttpError extends GuardError {
  readonly status: number;
  /** The message the server put in its error body (or the start of the body). */
  readonly serverMessage: string;
  constructor(status: number, serverMessage: string, url: string) {
    super('BACKEND_HTTP', `HTTP ${status} from ${url}: ${serverMessage}`);
    this.name = 'BackendHttpError';
    this.status = status;
    this.serverMessage = serverMessage;
  }
}

export interface JsonRequest {
  readonly url: string;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

const MAX_ERROR_TEXT = 500;

/** The server's message out of an error body, in the shapes the backends' servers use. */
export function serverErrorMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed !== null && typeof parsed === 'object' && 'error' in parsed) {
      const err = (parsed as { error: unknown }).error;
      if (typeof err === 'string') return err;
      if (
        err !== null &&
        typeof err === 'object' &&
        typeof (err as { message?: unknown }).message === 'string'
      )
        return (err as { message: string }).message;
    }
    if (
      parsed !== null &&
      typeof parsed === 'object' &&
      typeof (parsed as { message?: unknown }).message === 'string'
    )
      return (parsed as { message: string }).message;
  } catch {
    // not JSON: fall through to the raw text
  }
  const trimmed = text.trim();
  if (trimmed === '') return '(empty body)';
  return trimmed.length > MAX_ERROR_TEXT ? `${trimmed.slice(0, MAX_ERROR_TEXT)}…` : trimmed;
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

function causeCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 5 && cur !== null && typeof cur === 'object'; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/** POSTs `body` as JSON and returns the parsed JSON answer; see the module comment for errors. */
export async function postJson(req: JsonRequest): Promise<unknown> {
  const timeout = AbortSignal.timeout(req.timeoutMs);
  const signal = req.signal === undefined ? timeout : AbortSignal.any([timeout, req.signal]);
  const fail = (e: unknown, stage: string): GuardError => {
    if (req.signal?.aborted === true)
      return new GuardError('ABORTED', `request to ${req.url} aborted`, { cause: e });
    if (timeout.aborted)
      return new GuardError('BACKEND_TIMEOUT', `no answer from ${req.url} within ${req.timeoutMs} ms`, {
        cause: e,
      });
    const code = causeCode(e);
    if (stage === 'connect' || (code !== undefined && UNREACHABLE_CODES.has(code)))
      return new GuardError(
        'BACKEND_UNREACHABLE',
        `cannot reach ${req.url}${code === undefined ? '' : ` (${code})`}: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    return new GuardError('BAD_RESPONSE', `reading the answer from ${req.url} failed: ${String(e)}`, {
      cause: e,
    });
  };
  let response: Response;
  try {
    response = await fetch(req.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...req.headers },
      body: JSON.stringify(req.body),
      signal,
    });
  } catch (e) {
    throw fail(e, 'connect');
  }
  let text: string;
  try {
    text = await response.text();
  } catch (e) {
    throw fail(e, 'body');
  }
  if (!response.ok) throw new BackendHttpError(response.status, serverErrorMessage(text), req.url);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    const start = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    throw new GuardError(
      'BAD_RESPONSE',
      `${req.url} answered ${response.status} with a body that is not JSON: ${start}`,
      {
        cause: e,
      },
    );
  }
}

/** `base` without trailing slashes + `path` (which starts with '/'). */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}${path}`;
}

/** Throws INVALID_OPTION unless `endpoint` is an absolute http(s) URL. */
export function checkEndpoint(endpoint: string | undefined, backend: string): string {
  if (endpoint === undefined || endpoint.trim() === '')
    throw new GuardError('INVALID_OPTION', `the ${backend} backend needs an endpoint URL`);
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new GuardError('INVALID_OPTION', `${backend} endpoint is not a URL: '${endpoint}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new GuardError('INVALID_OPTION', `${backend} endpoint must be http(s), got '${endpoint}'`);
  return endpoint;
}

/** `value`, or `fallback` when unset; INVALID_OPTION unless an integer in [1, max]. */
export function checkPositiveInt(
  name: string,
  value: number | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new GuardError('INVALID_OPTION', `${name} must be an integer in [1, ${max}], got ${value}`);
  return value;
}

/** `value` checked against the answer's schema; BAD_RESPONSE naming the first mismatch otherwise. */
export function parseShape<T>(schema: z.ZodType<T>, value: unknown, url: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : `${issue.path.join('.') || '(root)'}: ${issue.message}`;
    throw new GuardError('BAD_RESPONSE', `unexpected answer shape from ${url}: ${where}`);
  }
  return parsed.data;
}

/** Natural log of Σ exp(xᵢ), stable; −∞ for an empty list. */
export function logSumExp(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NEGATIVE_INFINITY;
  const m = Math.max(...xs);
  if (m === Number.NEGATIVE_INFINITY || m === Number.POSITIVE_INFINITY) return m;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}

/**
 * The rendered prompt without its leading `<|begin_of_text|>`, for servers that add BOS themselves
 * when they tokenize a raw prompt (vLLM, llama.cpp server, Ollama): sending it too would put two BOS
 * tokens in front. The 8B template's stray space before BOS goes with it, so the server's token
 * sequence starts `<BOS><|start_header_id|>user…` as in Meta's reference prompt format.
 */
export function withoutBos(text: string): string {
  return text.replace(/^\s*<\|begin_of_text\|>/, '');
}
