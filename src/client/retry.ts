/**
 * Retry with capped exponential backoff and full jitter: before attempt k+1 the client waits a
 * uniform random time in [0, min(maxDelayMs, baseDelayMs·2^(k−1))], but never less than the server's
 * retry-after hint. Full jitter spreads a crowd of devices that failed together (a server restart)
 * instead of bringing them back in lock-step. Every operation is bounded twice: by attempts and by
 * an overall deadline.
 */
import { OrchardClientError } from './errors.ts';

export interface RetryPolicy {
  /** Attempts in total, including the first. */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Budget for one operation across all its attempts and waits. */
  readonly deadlineMs: number;
  /** Per-request timeout; a request that takes longer counts as a network failure. */
  readonly requestTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 8,
  baseDelayMs: 250,
  maxDelayMs: 20_000,
  deadlineMs: 120_000,
  requestTimeoutMs: 30_000,
};

/** Merges overrides into the default policy; an unusable value is an `invalid_argument` error. */
export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const p = { ...DEFAULT_RETRY, ...overrides };
  const bad: string[] = [];
  if (!(Number.isInteger(p.maxAttempts) && p.maxAttempts >= 1)) bad.push(`maxAttempts ${p.maxAttempts}`);
  for (const k of ['baseDelayMs', 'maxDelayMs', 'deadlineMs', 'requestTimeoutMs'] as const)
    if (!(Number.isFinite(p[k]) && p[k] >= 0)) bad.push(`${k} ${p[k]}`);
  if (bad.length > 0)
    throw new OrchardClientError('invalid_argument', `invalid retry policy: ${bad.join(', ')}`);
  return p;
}

/**
 * Wait before the retry that follows failed attempt `attempt` (1-based). `unit` is a uniform draw
 * in [0, 1); `retryAfterMs` is the server's hint, a floor.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  unit: number,
  retryAfterMs?: number,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.max(Math.floor(unit * ceiling), retryAfterMs ?? 0);
}

/** A uniform draw in [0, 1) from 4 secure random bytes. */
export function unitFromBytes(bytes: Uint8Array): number {
  const b = bytes;
  return (
    ((((b[0] as number) << 24) | ((b[1] as number) << 16) | ((b[2] as number) << 8) | (b[3] as number)) >>>
      0) /
    2 ** 32
  );
}
