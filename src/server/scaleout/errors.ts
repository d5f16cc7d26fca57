/**
 * Typed errors of the scale-out primitives. Callers branch on `code`:
 * - BACKEND_UNAVAILABLE: Redis unreachable or timed out; the operation may or may not have happened
 *   (retry it: every operation here is idempotent or guarded by a token / id).
 * - STATE_LOST: Redis came back without the data it had (restarted without persistence); a lease
 *   holder must treat its lease as lost, a leader must rebuild from storage.
 * - INVALID_INPUT: a malformed argument; nothing was sent.
 */
export type ScaleoutErrorCode = 'BACKEND_UNAVAILABLE' | 'STATE_LOST' | 'INVALID_INPUT';

export class ScaleoutError extends Error {
  constructor(
    readonly code: ScaleoutErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ScaleoutError';
  }
}

export function invalidInput(message: string): never {
  throw new ScaleoutError('INVALID_INPUT', message);
}

export function requireString(v: unknown, what: string): void {
  if (typeof v !== 'string' || v.length === 0) invalidInput(`${what} must be a non-empty string`);
}

export function requirePositiveInt(v: unknown, what: string): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    invalidInput(`${what} must be an integer ≥ 1`);
}

export function requireFinite(v: unknown, what: string): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) invalidInput(`${what} must be a finite number`);
}
