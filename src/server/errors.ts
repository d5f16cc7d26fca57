/** Errors the server turns into typed HTTP error bodies `{error:{code,message}}`. */
import type { ApiErrorBody, ApiErrorCode } from './protocol.ts';

const STATUS: Record<ApiErrorCode, number> = {
  bad_request: 400,
  unauthenticated: 401,
  revoked: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  shape: 422,
  non_finite: 422,
  norm_bound: 422,
  stale: 409,
  unknown_version: 409,
  not_assigned: 409,
  duplicate: 409,
  rate_limited: 429,
  timeout: 408,
  unavailable: 503,
  finished: 410,
  internal: 500,
};

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = STATUS[code];
  }

  body(): ApiErrorBody {
    return {
      error:
        this.retryAfterMs === undefined
          ? { code: this.code, message: this.message }
          : { code: this.code, message: this.message, retryAfterMs: this.retryAfterMs },
    };
  }
}

export function httpStatusOf(code: ApiErrorCode): number {
  return STATUS[code];
}
