/**
 * Shamir secret sharing of 32-byte secrets over the prime field GF(p), p = 2^256 + 297 (the smallest
 * prime above 2^256, so every 32-byte string is a field element and the map is injective).
 *
 * A secret s is the constant term of a random polynomial f of degree t − 1; holder x receives f(x).
 * Any t shares give s back by Lagrange interpolation at 0; any t − 1 shares are independent of s.
 * Given more than t shares, combineShares checks that all of them lie on one polynomial of degree
 * t − 1, which detects a corrupted share whenever at least t honest ones are also present.
 */
import { secaggError } from './errors.ts';

export const SHAMIR_PRIME = (1n << 256n) + 297n;
export const SECRET_BYTES = 32;
/** Serialized size of a share value: p needs 257 bits. */
export const SHARE_VALUE_BYTES = 33;

export interface Share {
  /** Evaluation point: a positive integer, distinct per holder. */
  readonly x: number;
  /** f(x) in [0, p). */
  readonly y: bigint;
}

function mod(a: bigint): bigint {
  const r = a % SHAMIR_PRIME;
  return r < 0n ? r + SHAMIR_PRIME : r;
}

/** Modular inverse by the extended Euclidean algorithm; a must be non-zero mod p. */
function inverse(a: bigint): bigint {
  let [oldR, r] = [mod(a), SHAMIR_PRIME];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS);
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigIntToBytes(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (v !== 0n) throw secaggError('INVALID_SHARE', `value does not fit in ${length} bytes`);
  return out;
}

/** Uniform field element by rejection sampling 257-bit strings (acceptance about 1/2). */
function randomFieldElement(randomBytes: (n: number) => Uint8Array): bigint {
  for (;;) {
    const b = randomBytes(SHARE_VALUE_BYTES);
    b[0] = (b[0] as number) & 1;
    const v = bytesToBigInt(b);
    if (v < SHAMIR_PRIME) return v;
  }
}

function checkPoint(x: number): void {
  if (!Number.isSafeInteger(x) || x < 1)
    throw secaggError('INVALID_SHARE', `evaluation point ${x} is not a positive integer`);
}

/** Splits a 32-byte secret into one share per evaluation point; any `threshold` of them recover it. */
export function splitSecret(
  secret: Uint8Array,
  points: readonly number[],
  threshold: number,
  randomBytes: (n: number) => Uint8Array,
): Share[] {
  if (secret.length !== SECRET_BYTES)
    throw secaggError('INVALID_SHARE', `secret must be ${SECRET_BYTES} bytes`);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > points.length)
    throw secaggError('INVALID_SHARE', `threshold ${threshold} must be in [1, ${points.length}]`);
  const seen = new Set<number>();
  for (const x of points) {
    checkPoint(x);
    if (seen.has(x)) throw secaggError('INVALID_SHARE', `evaluation point ${x} repeated`);
    seen.add(x);
  }
  const coeffs = [bytesToBigInt(secret)];
  for (let i = 1; i < threshold; i++) coeffs.push(randomFieldElement(randomBytes));
  return points.map((x) => {
    const bx = BigInt(x);
    let y = 0n;
    for (let i = coeffs.length - 1; i >= 0; i--) y = (y * bx + (coeffs[i] as bigint)) % SHAMIR_PRIME;
    return { x, y };
  });
}

/** Inverses of all values (none zero mod p) with one modular inversion (Montgomery's trick). */
function batchInverse(values: readonly bigint[]): bigint[] {
  const prefix: bigint[] = [];
  let acc = 1n;
  for (const v of values) {
    acc = (acc * v) % SHAMIR_PRIME;
    prefix.push(acc);
  }
  let inv = inverse(acc);
  const out = new Array<bigint>(values.length);
  for (let i = values.length - 1; i >= 0; i--) {
    out[i] = i === 0 ? inv : (inv * (prefix[i - 1] as bigint)) % SHAMIR_PRIME;
    inv = (inv * (values[i] as bigint)) % SHAMIR_PRIME;
  }
  return out;
}

/**
 * The polynomial of degree < t through t shares, in barycentric form: f(z) = ℓ(z) Σ w_i y_i / (z − x_i)
 * with ℓ(z) = Π (z − x_i) and w_i = 1 / Π_{j≠i} (x_i − x_j). The weights cost O(t²) once; each
 * evaluation then costs O(t) multiplications and one inversion.
 */
class Interpolant {
  private readonly xs: bigint[];
  private readonly ys: bigint[];
  private readonly weights: bigint[];

  constructor(basis: readonly Share[]) {
    this.xs = basis.map((s) => BigInt(s.x));
    this.ys = basis.map((s) => s.y);
    const denominators = this.xs.map((xi, i) => {
      let d = 1n;
      for (let j = 0; j < this.xs.length; j++)
        if (j !== i) d = (d * mod(xi - (this.xs[j] as bigint))) % SHAMIR_PRIME;
      return d;
    });
    this.weights = batchInverse(denominators);
  }

  /** f(z) for z outside the basis points. */
  at(z: bigint): bigint {
    const diffs = this.xs.map((x) => mod(z - x));
    const inv = batchInverse(diffs);
    let ell = 1n;
    for (const d of diffs) ell = (ell * d) % SHAMIR_PRIME;
    let acc = 0n;
    for (let i = 0; i < diffs.length; i++)
      acc =
        (acc + (((this.weights[i] as bigint) * (this.ys[i] as bigint)) % SHAMIR_PRIME) * (inv[i] as bigint)) %
        SHAMIR_PRIME;
    return (ell * acc) % SHAMIR_PRIME;
  }
}

/**
 * Recovers the secret from at least `threshold` shares. Throws BELOW_THRESHOLD with fewer, and
 * INVALID_SHARE for malformed, duplicated or mutually inconsistent shares.
 */
export function combineShares(shares: readonly Share[], threshold: number): Uint8Array {
  if (!Number.isInteger(threshold) || threshold < 1)
    throw secaggError('INVALID_SHARE', `bad threshold ${threshold}`);
  if (shares.length < threshold)
    throw secaggError('BELOW_THRESHOLD', `${shares.length} shares, ${threshold} needed to reconstruct`);
  const seen = new Set<number>();
  for (const s of shares) {
    checkPoint(s.x);
    if (seen.has(s.x)) throw secaggError('INVALID_SHARE', `two shares at evaluation point ${s.x}`);
    seen.add(s.x);
    if (s.y < 0n || s.y >= SHAMIR_PRIME)
      throw secaggError('INVALID_SHARE', `share value at ${s.x} is outside the field`);
  }
  const f = new Interpolant(shares.slice(0, threshold));
  for (const extra of shares.slice(threshold)) {
    if (f.at(BigInt(extra.x)) !== extra.y)
      throw secaggError('INVALID_SHARE', `share at ${extra.x} is inconsistent with the others`);
  }
  const secret = f.at(0n);
  // A secret is a 32-byte string: a constant term at or above 2^256 proves some share is corrupt.
  if (secret >= 1n << 256n)
    throw secaggError('INVALID_SHARE', 'shares interpolate to a value that is not a secret');
  return bigIntToBytes(secret, SECRET_BYTES);
}
