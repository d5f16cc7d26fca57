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
 * Spectrum X_k, k = 0..n/2, of a real sequence zero-padded to length n (a power of two ≥ 2), from
 * ONE complex FFT of half the length: pack z_j = x_2j + i·x_(2j+1), then
 * X_k = (Z_k + conj Z_(m−k))/2 − i·e^(−2πik/n)·(Z_k − conj Z_(m−k))/2 with m = n/2.
 */
function realSpectrum(x: Float64Array, n: number): { re: Float64Array; im: Float64Array } {
  const m = n >> 1;
  const zr = new Float64Array(m);
  const zi = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    zr[j] = 2 * j < x.length ? (x[2 * j] as number) : 0;
    zi[j] = 2 * j + 1 < x.length ? (x[2 * j + 1] as number) : 0;
  }
  fft(zr, zi);
  const table = twiddles(n);
  const re = new Float64Array(m + 1);
  const im = new Float64Array(m + 1);
  for (let k = 0; k <= m; k++) {
    const a = k % m;
    const b = (m - k) % m;
    const pr = zr[a] as number;
    const pi = zi[a] as number;
    const qr = zr[b] as number;
    const qi = -(zi[b] as number); // conj Z_(m−k)
    const er = 0.5 * (pr + qr);
    const ei = 0.5 * (pi + qi);
    const dr = 0.5 * (pr - qr);
    const di = 0.5 * (pi - qi);
    // w = e^(−2πik/n) from the shared table (entry n/2 + k holds angle 2πk/n); k = m is −1.
    const wr = k < m ? (table.cos[m + k] as number) : -1;
    const wi = k < m ? -(table.sin[m + k] as number) : 0;
    // −i·w·d = (w·d) rotated by −90°: (x + iy)·(−i) = y − ix
    const tr = wr * dr - wi * di;
    const ti = wr * di + wi * dr;
    re[k] = er + ti;
    im[k] = ei - tr;
  }
  return { re, im };
}

/** Inverse of realSpectrum: the real length-n sequence with spectrum Y_k (k = 0..n/2, Hermitian). */
function inverseRealSpectrum(yr: Float64Array, yi: Float64Array, n: number): Float64Array {
  const m = n >> 1;
  const table = twiddles(n);
  const zr = new Float64Array(m);
  const zi = new Float64Array(m);
  for (let k = 0; k < m; k++) {
    const pr = yr[k] as number;
    const pi = yi[k] as number;
    const qr = yr[m - k] as number;
    const qi = -(yi[m - k] as number); // conj Y_(m−k)
    // Even samples' spectrum E_k = (Y_k + conj Y_(m−k))/2; odd O_k = (Y_k − conj Y_(m−k))/2 · e^(2πik/n).
    const er = 0.5 * (pr + qr);
    const ei = 0.5 * (pi + qi);
    const dr = 0.5 * (pr - qr);
    const di = 0.5 * (pi - qi);
    const wr = table.cos[m + k] as number; // e^(+2πik/n)
    const wi = table.sin[m + k] as number;
    const or = dr * wr - di * wi;
    const oi = dr * wi + di * wr;
    // z_k = E_k + i·O_k
    zr[k] = er - oi;
    zi[k] = ei + or;
  }
  fft(zr, zi, true);
  const out = new Float64Array(n);
  for (let j = 0; j < m; j++) {
    out[2 * j] = zr[j] as number;
    out[2 * j + 1] = zi[j] as number;
  }
  return out;
}

/**
 * Linear convolution of two real sequences (length a + b − 1) through real-input transforms of
 * half size: a squaring (a === b, the common case when composing a PLD with itself) costs two
 * half-length complex FFTs, a general product three.
 */
export function convolve(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length === 0 || b.length === 0) return new Float64Array(0);
  const outLen = a.length + b.length - 1;
  if (a.length * b.length <= DIRECT_LIMIT) return convolveDirect(a, b);
  let n = 2;
  while (n < outLen) n <<= 1;
  const sa = realSpectrum(a, n);
  const sb = a === b ? sa : realSpectrum(b, n);
  const m = n >> 1;
  const yr = new Float64Array(m + 1);
  const yi = new Float64Array(m + 1);
  for (let k = 0; k <= m; k++) {
    const ar = sa.re[k] as number;
    const ai = sa.im[k] as number;
    const br = sb.re[k] as number;
    const bi = sb.im[k] as number;
    yr[k] = ar * br - ai * bi;
    yi[k] = ar * bi + ai * br;
  }
  return inverseRealSpectrum(yr, yi, n).subarray(0, outLen).slice();
}
