/**
 * The one bounded-concurrency map of the guard: `Guard.checkMany` (no batch path), the middleware's
 * `filter` and the evaluation runner `runEval` all go through `mapPool`.
 *
 *   const verdicts = await mapPool(items, 4, (item, i, signal) => guard.check(item, { signal }));
 *
 * Semantics:
 * - At most `limit` calls of `fn` are pending at any time; items are started in input order and the
 *   results are returned in input order (not completion order).
 * - **Fail-fast.** The first call that throws or rejects ends the pool: no further item is started,
 *   the `signal` handed to the calls still running is aborted (its reason is that error) so work
 *   that honours it stops early, and the returned promise rejects with that first error once every
 *   running call has settled — nothing started by the pool is still running when it settles. Later
 *   errors are dropped. A caller that wants an outcome per item (keep going past failures) catches
 *   inside `fn` and returns the failure as a value; `runEval` does this for input errors, the
 *   middleware for `onError: 'allow'`.
 * - `options.signal` is passed on, not enforced: when it aborts, the calls' `signal` aborts too and
 *   `fn` decides what that means (guard backends reject with `ABORTED`, which then ends the pool like
 *   any failure). The pool itself never invents an error of its own for an abort.
 * - An empty input resolves to `[]` without calling `fn`. A `limit` that is not an integer ≥ 1, or
 *   `items` that are not an array, are refused before anything runs (GuardError `INVALID_OPTION`).
 */
import { GuardError } from './types.ts';

export interface MapPoolOptions {
  /** Forwarded to every call's signal (see the module comment). */
  readonly signal?: AbortSignal;
}

/** `value` when it is a positive safe integer; GuardError INVALID_OPTION naming `what` otherwise. */
export function checkConcurrency(value: unknown, what = 'concurrency'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new GuardError('INVALID_OPTION', `${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export async function mapPool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number, signal: AbortSignal) => R | Promise<R>,
  options: MapPoolOptions = {},
): Promise<R[]> {
  checkConcurrency(limit);
  if (!Array.isArray(items)) throw new GuardError('INVALID_OPTION', 'mapPool needs an array of items');
  const results = new Array<R>(items.length);
  if (items.length === 0) return results;

  const stop = new AbortController();
  const outer = options.signal;
  const forward = () => stop.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener('abort', forward, { once: true });

  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T, i, stop.signal);
      } catch (e) {
        if (!failed) {
          failed = true;
          firstError = e;
          stop.abort(e);
        }
        return;
      }
    }
  };
  try {
    // Workers never reject (they catch), so this waits for every running call to settle.
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  } finally {
    outer?.removeEventListener('abort', forward);
  }
  if (failed) throw firstError;
  return results;
}
