/**
 * Special functions the accountants need, written for accuracy far into the tails: privacy
 * accounting multiplies tiny probabilities by huge ratios, so a complementary error function that
 * is only accurate to 1e-7 (the usual Abramowitz–Stegun fit) or that underflows at x ≈ 27 would
 * silently distort ε. Everything here is accurate to a few ulps (relative) for all finite inputs,
 * and the log versions never underflow.
 */

const SQRT_PI = Math.sqrt(Math.PI);
const TWO_OVER_SQRT_PI = 2 / SQRT_PI;
const SQRT2 = Math.SQRT2;

/** Below this |x| the Maclaurin series of erf converges fast and 1 − erf(x) loses no digits. */
const SERIES_LIMIT = 0.5;

/** erfc(x) underflows to 0 beyond this (e^(−27.3²) ≈ 1e-324). */
const UNDERFLOW_LIMIT = 27.3;

/** erf(x) for |x| < SERIES_LIMIT by its Maclaurin series (alternating, terms shrink by ≥ 4×). */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x; // (−1)^n x^(2n+1) / n!
  let sum = x;
  for (let n = 1; n < 60; n++) {
    term *= -x2 / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return TWO_OVER_SQRT_PI * sum;
}

/**
 * Scaled complementary error function erfcx(x) = exp(x²)·erfc(x) for x ≥ SERIES_LIMIT, from the
 * Laplace continued fraction erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))),
 * evaluated forwards with the modified Lentz method. It needs ~700 terms at x = 0.5 and < 60 for
 * x ≥ 2, and stays accurate to a few ulps because every partial denominator is positive.
 */
function erfcxContinuedFraction(x: number): number {
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 5000; n++) {
    const a = n / 2;
    d = 1 / (x + a * d);
    c = x + a / c;
    const ratio = c * d;
    f *= ratio;
    if (Math.abs(ratio - 1) < 1e-16) break;
  }
  return 1 / (f * SQRT_PI);
}

/**
 * exp(−x²) without the rounding error of forming x² (which would cost ~x²·1e-16 relative):
 * split x = hi + lo with hi a multiple of 1/16, so hi² is exact.
 */
function expMinusSquare(x: number): number {
  const hi = Math.round(x * 16) / 16;
  const lo = x - hi;
  return Math.exp(-hi * hi) * Math.exp(-lo * (x + hi));
}

/** erfc(x) = 1 − erf(x), relative accuracy of a few ulps for every x (underflows to 0 past x ≈ 26.5). */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x === Number.POSITIVE_INFINITY) return 0;
  if (x === Number.NEGATIVE_INFINITY) return 2;
  if (Math.abs(x) < SERIES_LIMIT) return 1 - erfSeries(x);
  if (x < 0) return 2 - erfc(-x);
  // Past this, erfc(x) < e^(−x²) is below the smallest subnormal; the split in expMinusSquare
  // would also overflow its correction factor (0 · ∞) for very large x.
  if (x > UNDERFLOW_LIMIT) return 0;
  return expMinusSquare(x) * erfcxContinuedFraction(x);
}

/** log(erfc(x)), finite for every finite x (no underflow: about −x² for large x). */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x === Number.POSITIVE_INFINITY) return Number.NEGATIVE_INFINITY;
  if (x < SERIES_LIMIT) return Math.log(erfc(x));
  return -x * x + Math.log(erfcxContinuedFraction(x));
}

/** Standard normal CDF Φ(z). */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / SQRT2);
}

/** Standard normal survival function 1 − Φ(z), accurate in the upper tail. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / SQRT2);
}

/** log Φ(z), finite far into the lower tail. */
export function logNormalCdf(z: number): number {
  return Math.log(0.5) + logErfc(-z / SQRT2);
}

/**
 * P(a < Z ≤ b) for standard normal Z, computed from whichever tail keeps the two terms small so
 * that tail intervals keep their relative accuracy instead of drowning in 1 − 1 cancellation.
 */
export function normalIntervalProbability(a: number, b: number): number {
  if (!(b > a)) return 0;
  if (a >= 0) return normalSf(a) - normalSf(b);
  if (b <= 0) return normalCdf(b) - normalCdf(a);
  return 1 - normalCdf(a) - normalSf(b);
}

/** log(e^a + e^b) without overflow or underflow. */
export function logAddExp(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  const hi = Math.max(a, b);
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}

/** log(e^a − e^b) for a ≥ b; −∞ when they are equal. */
export function logSubExp(a: number, b: number): number {
  if (b === Number.NEGATIVE_INFINITY) return a;
  if (b > a) throw new RangeError(`logSubExp: log of a negative number (a=${a}, b=${b})`);
  if (a === b) return Number.NEGATIVE_INFINITY;
  // log(e^a (1 − e^(b−a))) = a + log(−expm1(b − a)), accurate even when b is close to a.
  return a + Math.log(-Math.expm1(b - a));
}
