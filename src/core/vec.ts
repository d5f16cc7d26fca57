/**
 * Flat Float32Array kernels shared by models, strategies, privacy and compression code.
 * Loops are written so V8 keeps them monomorphic on Float32Array; accumulation of reductions is in
 * float64 (JS numbers) to avoid float32 round-off on million-element vectors.
 */
import { NonFiniteError, ShapeError } from './errors.ts';

export function assertSameLength(a: ArrayLike<number>, b: ArrayLike<number>, what = 'vectors'): void {
  if (a.length !== b.length)
    throw new ShapeError(`${what} have different lengths: ${a.length} vs ${b.length}`);
}

/** y += a * x */
export function axpy(y: Float32Array, a: number, x: Float32Array): void {
  assertSameLength(y, x);
  const n = y.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    y[i] = (y[i] as number) + a * (x[i] as number);
    y[i + 1] = (y[i + 1] as number) + a * (x[i + 1] as number);
    y[i + 2] = (y[i + 2] as number) + a * (x[i + 2] as number);
    y[i + 3] = (y[i + 3] as number) + a * (x[i + 3] as number);
  }
  for (; i < n; i++) y[i] = (y[i] as number) + a * (x[i] as number);
}

/** out = a - b */
export function sub(out: Float32Array, a: Float32Array, b: Float32Array): Float32Array {
  assertSameLength(a, b);
  assertSameLength(out, a);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) - (b[i] as number);
  return out;
}

/** x *= a */
export function scale(x: Float32Array, a: number): void {
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) * a;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertSameLength(a, b);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/**
 * Sum of squares with four running sums (one sum's additions wait on each other; four interleave).
 * Any NaN/±Inf element makes the result NaN or Infinity, so a finite result proves every element
 * finite: one pass serves both the norm and the finiteness check.
 */
export function sumOfSquares(x: ArrayLike<number>): number {
  const n = x.length;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a = x[i] as number;
    const b = x[i + 1] as number;
    const c = x[i + 2] as number;
    const d = x[i + 3] as number;
    s0 += a * a;
    s1 += b * b;
    s2 += c * c;
    s3 += d * d;
  }
  for (; i < n; i++) {
    const v = x[i] as number;
    s0 += v * v;
  }
  return s0 + s1 + (s2 + s3);
}

export function norm2(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i] as number;
    s += v * v;
  }
  return Math.sqrt(s);
}

/** True when every element is finite (no NaN, no ±Infinity). */
export function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) {
    const v = x[i] as number;
    // v - v is NaN for NaN and ±Infinity, 0 otherwise: one branch per element.
    if (v - v !== 0) return false;
  }
  return true;
}

export function assertFinite(x: ArrayLike<number>, what = 'vector'): void {
  if (!allFinite(x)) throw new NonFiniteError(`${what} contains NaN or Infinity`);
}

export function clone(x: Float32Array): Float32Array {
  return new Float32Array(x);
}
