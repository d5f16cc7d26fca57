/**
 * Per-update L2 clipping for user-level DP. It FAILS CLOSED: an update containing NaN or ±Infinity,
 * or whose norm is not finite, is rejected with a NonFiniteError before anything is written, so a
 * corrupted update can neither pass through unclipped nor poison the aggregate.
 */

import { ConfigError, NonFiniteError } from '../../core/errors.ts';
import { sumOfSquares } from '../../core/vec.ts';

export interface ClipResult {
  /** The clipped update (a new array unless `out` was given). */
  readonly clipped: Float32Array;
  /** L2 norm of the input, computed in float64. */
  readonly norm: number;
  /** Factor applied: min(1, maxNorm / norm). */
  readonly scale: number;
  readonly wasClipped: boolean;
}

/**
 * L2 norm in float64; throws NonFiniteError on any non-finite element or an overflowing norm.
 *
 * One pass with four partial sums and no per-element test: a NaN or ±Infinity element makes the sum
 * NaN or Infinity, so a finite total proves every element finite (squares of finite float32 values
 * cannot overflow a double; for float64 input an overflow also ends non-finite and is rejected). Only
 * then is the offending element looked up, for the message.
 */
export function finiteL2Norm(update: ArrayLike<number>): number {
  const n = update.length;
  const norm = Math.sqrt(sumOfSquares(update));
  if (!Number.isFinite(norm)) {
    for (let j = 0; j < n; j++) {
      const v = update[j] as number;
      if (v - v !== 0)
        throw new NonFiniteError(`update element ${j} is ${v}: rejected (clipping fails closed)`);
    }
    throw new NonFiniteError('update norm is not finite: rejected (clipping fails closed)');
  }
  return norm;
}

/**
 * Scales `update` so its L2 norm is at most `maxNorm`. Writes into `out` (which may be `update`
 * itself) or a fresh array; on any error nothing has been written.
 */
export function clipL2(update: Float32Array, maxNorm: number, out?: Float32Array): ClipResult {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0))
    throw new ConfigError(
      [{ path: 'maxNorm', message: `must be a finite number > 0, got ${maxNorm}` }],
      'clipping',
    );
  if (out !== undefined && out.length !== update.length)
    throw new ConfigError(
      [{ path: 'out', message: `length ${out.length} differs from the update's ${update.length}` }],
      'clipping',
    );
  const norm = finiteL2Norm(update);
  const scale = norm > maxNorm ? maxNorm / norm : 1;
  const target = out ?? new Float32Array(update.length);
  if (scale === 1) {
    if (target !== update) target.set(update);
  } else {
    for (let i = 0; i < update.length; i++) target[i] = (update[i] as number) * scale;
  }
  return { clipped: target, norm, scale, wasClipped: scale < 1 };
}
