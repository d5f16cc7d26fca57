/**
 * A small in-place radix-2 complex FFT and the real linear convolution built on it, for composing
 * privacy loss distributions. Twiddle factors are computed directly per index (not by repeated
 * multiplication) so their error does not grow with the transform size.
 */
import { invalidArgument } from '../../core/errors.ts';

const twiddleCache = new Map<number, { cos: Float64Array; sin: Float64Array }>();

/**
 * Twiddles laid out per stage: for a stage combining blocks of size 2h, entries [h, 2h) hold
 * cos/sin(2πk/(2h)) for k < h, so the butterfly loop reads them contiguously (a single table
 * indexed with stride n/2h thrashes the cache at the large sizes PLD composition uses).
 */
function twiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  let t = twiddleCache.get(n);
  if (t === undefined) {
    const cos = new Float64Array(Math.max(1, n));
    const sin = new Float64Array(Math.max(1, n));
    for (let h = 1; h < n; h <<= 1) {
      for (let k = 0; k < h; k++) {
        cos[h + k] = Math.cos((Math.PI * k) / h);
        sin[h + k] = Math.sin((Math.PI * k) / h);
      }
    }
    t = { cos, sin };
    // Only a handful of sizes are ever used; keep the few most recent.
    if (twiddleCache.size > 8) twiddleCache.clear();
    twiddleCache.set(n, t);
  }
  return t;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/**
 * In-place FFT of (re, im). Forward uses e^(−2πi jk/n); `inverse` uses e^(+2πi jk/n) and divides by
 * n, so fft(inverse) ∘ fft is the identity.
 */
export function fft(re: Float64Array, im: Float64Array, inverse = false): void {
  const n = re.length;
  if (im.length !== n) throw invalidArgument(`fft: re and im differ in length (${n} vs ${im.length})`);
  if (!isPowerOfTwo(n)) throw invalidArgument(`fft: length must be a power of two, got ${n}`);
  // Bit-reversal permutation.
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      const tr = re[i] as number;
      re[i] = re[j] as number;
      re[j] = tr;
      const ti = im[i] as number;
      im[i] = im[j] as number;
      im[j] = ti;
    }
  }
  const { cos, sin } = twiddles(n);
  const sign = inverse ? 1 : -1;
  for (let len = 2; len <= n; len <<= 1) {
    const half = len >> 1;
    for (let start = 0; start < n; start += len) {
      for (let k = 0; k < half; k++) {
        const wr = cos[half + k] as number;
        const wi = sign * (sin[half + k] as number);
        const a = start + k;
        const b = a + half;
        const br = re[b] as number;
        const bi = im[b] as number;
        const xr = br * wr - bi * wi;
        const xi = br * wi + bi * wr;
        const ar = re[a] as number;
        const ai = im[a] as number;
        re[a] = ar + xr;
        im[a] = ai + xi;
        re[b] = ar - xr;
        im[b] = ai - xi;
      }
    }
  }
  if (inverse) {
    for (let i = 0; i < n; i++) {
      re[i] = (re[i] as number) / n;
      im[i] = (im[i] as number) / n;
    }
  }
}

/** Below this many multiply-adds the direct O(n·m) convolution is faster than three FFTs. */
const DIRECT_LIMIT = 1 << 16;

/** Direct linear convolution; the reference the FFT path is tested against. */
export function convolveDirect(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length - 1);
  for (let i = 0; i < a.length; i++) {
    const ai = a[i] as number;
    if (ai === 0) continue;
    for (let j = 0; j < b.length; j++) out[i + j] = (out[i + j] as number) + ai * (b[j] as number);
  }
  return out;
}

/**
 * Linear convolution of two real sequences (length a + b − 1). Both inputs go into ONE complex
 * transform (a as the real part, b as the imaginary part) and are separated by conjugate symmetry,
 * so a convolution costs two FFTs instead of three. Squaring (a === b) needs the same two.
 */
export function convolve(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length === 0 || b.length === 0) return new Float64Array(0);
  const outLen = a.length + b.length - 1;
  if (a.length * b.length <= DIRECT_LIMIT) return convolveDirect(a, b);
  let n = 1;
  while (n < outLen) n <<= 1;
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  re.set(a);
  im.set(b);
  fft(re, im);
  // With Z = FFT(a + i b): A_k = (Z_k + conj Z_{n−k})/2, B_k = (Z_k − conj Z_{n−k})/(2i).
  // The product A_k B_k = (Z_k² − conj(Z_{n−k})²)/(4i); computed for k and n−k together.
  const pr = new Float64Array(n);
  const pi = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const m = (n - k) & (n - 1);
    const zr = re[k] as number;
    const zi = im[k] as number;
    const cr = re[m] as number;
    const ci = -(im[m] as number);
    // Z_k² − conj(Z_m)²
    const dr = zr * zr - zi * zi - (cr * cr - ci * ci);
    const di = 2 * zr * zi - 2 * cr * ci;
    // divide by 4i: (dr + i di)/(4i) = (di − i dr)/4
    pr[k] = di / 4;
    pi[k] = -dr / 4;
  }
  fft(pr, pi, true);
  return pr.subarray(0, outLen).slice();
}
