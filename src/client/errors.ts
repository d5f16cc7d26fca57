/**
 * Typed client errors. Every failure the SDK reports is an OrchardClientError with a stable `code`:
 * the server's ApiErrorCode for answers the server gave, or a client-side code for what never got an
 * answer (network failure, timeout, exhausted retries, a response that breaks the protocol).
 */
import type { ApiErrorCode } from '../server/protocol.ts';

export type ClientErrorCode =
  | ApiErrorCode
  /** The request never got an HTTP answer (connection refused or reset, DNS, per-request timeout). */
  | 'network'
  /** Retries ran out (attempts or the overall deadline); `cause` holds the last failure. */
  | 'retries_exhausted'
  /** The server answered something the protocol does not allow (wrong content type, bad frame). */
  | 'protocol'
  /** The caller aborted (AbortSignal). */
  | 'aborted'
  /** The caller passed something unusable (bad option, model shape that does not fit the data). */
  | 'invalid_argument';

export class OrchardClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OrchardClientError';
    this.code = code;
  }
}

/** An error answer from the server (any status ≥ 400 with the protocol's error body). */
export class ApiError extends OrchardClientError {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  constructor(status: number, code: ApiErrorCode, message: string, retryAfterMs?: number) {
    super(code, `${status} ${code}: ${message}`);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  /** Server-side trouble worth retrying: 5xx, `unavailable`, `timeout`, `rate_limited`. */
  get retryable(): boolean {
    return (
      this.status >= 500 ||
      this.code === 'unavailable' ||
      this.code === 'timeout' ||
      this.code === 'rate_limited' ||
      this.code === 'internal'
    );
  }
}

/** True for failures a retry may fix (network errors and retryable server answers). */
export function isRetryable(e: unknown): boolean {
  if (e instanceof ApiError) return e.retryable;
  return e instanceof OrchardClientError && e.code === 'network';
}
