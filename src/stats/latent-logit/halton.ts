/**
 * Halton quasi-random draws for simulated maximum likelihood: dimension k uses the radical inverse in
 * the k-th prime base, and normal draws come from the inverse normal CDF.
 */
import { OrchardError } from '../../core/errors.ts';

/** The first `count` primes. */
export function firstPrimes(count: number): number[] {
  const primes: number[] = [];
  for (let c = 2; primes.length < count; c++) {
    if (primes.every((p) => c % p !== 0)) primes.push(c);
  }
  return primes;
}

/** Radical inverse of `index` (≥ 0) in `base`: the digits of index mirrored about the radix point. */
export function radicalInverse(index: number, base: number): number {
  if (!Number.isInteger(index) || index < 0)
    throw new OrchardError('INVALID_ARGUMENT', `index must be an integer ≥ 0, got ${index}`);
  if (!Number.isInteger(base) || base < 2)
    throw new OrchardError('INVALID_ARGUMENT', `base must be an integer ≥ 2, got ${base}`);
  let result = 0;
  let f = 1 / base;
  let i = index;
  while (i > 0) {
    result += f * (i % base);
    i = Math.floor(i / base);
    f /= base;
  }
  return result;
}

/** Halton points `start`, start+1, … (count of them) in `base`; index 0 is the point 0, so start at 1. */
export function haltonSequence(base: number, count: number, start = 1): Float64Array {
  const out = new Float64Array(count);
  for (let k = 0; k < count; k++) out[k] = radicalInverse(start + k, base);
  return out;
}

/**
 * Φ⁻¹(p) for p in (0, 1): Acklam's rational approximations on the central region and the two tails
 * (relative error below 1.2e-9), ample for simulation draws.
 */
export function inverseNormalCdf(p: number): number {
  if (!(p > 0 && p < 1))
    throw new OrchardError('INVALID_ARGUMENT', `inverseNormalCdf needs p in (0, 1), got ${p}`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const [a0, a1, a2, a3, a4, a5] = a as [number, number, number, number, number, number];
  const [b0, b1, b2, b3, b4] = b as [number, number, number, number, number];
  const [c0, c1, c2, c3, c4, c5] = c as [number, number, number, number, number, number];
  const [d0, d1, d2, d3] = d as [number, number, number, number];
  const low = 0.02425;
  let x: number;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c0 * q + c1) * q + c2) * q + c3) * q + c4) * q + c5) /
      ((((d0 * q + d1) * q + d2) * q + d3) * q + 1);
  } else if (p <= 1 - low) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a0 * r + a1) * r + a2) * r + a3) * r + a4) * r + a5) * q) /
      (((((b0 * r + b1) * r + b2) * r + b3) * r + b4) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x =
      -(((((c0 * q + c1) * q + c2) * q + c3) * q + c4) * q + c5) /
      ((((d0 * q + d1) * q + d2) * q + d3) * q + 1);
  }
  return x;
}

/**
 * Standard-normal Halton draws for n units × R draws × `dims` dimensions, flattened as
 * [(unit · R + draw) · dims + k]. Unit i takes consecutive points (skip + i·R + 1 …) of each
 * dimension's sequence, the usual assignment in simulated maximum likelihood; the first `skip` points
 * are discarded because early points of different bases are strongly correlated.
 */
export function haltonNormalDraws(units: number, draws: number, dims: number, skip = 10): Float64Array {
  const primes = firstPrimes(dims);
  const out = new Float64Array(units * draws * dims);
  for (const [k, base] of primes.entries()) {
    const seq = haltonSequence(base, units * draws, skip + 1);
    for (let m = 0; m < units * draws; m++) out[m * dims + k] = inverseNormalCdf(seq[m] as number);
  }
  return out;
}
