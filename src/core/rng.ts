/**
 * Seeded, reproducible randomness for experiments (never for security: DP noise, masks and keys use
 * node:crypto / WebCrypto). sfc32 core: fast in JS (pure 32-bit integer ops) and passes PractRand to
 * large sizes. Streams are derived by hashing (seed, stream id), so client k's randomness is a pure
 * function of (seed, k) and a million lazily generated clients need no stored state.
 */
function mix32(x: number): number {
  // splitmix32-style finalizer (murmur3 fmix32 constants).
  let z = x | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal = 0;
  private hasSpare = false;

  /** `seed` is any integer; `stream` selects an independent sequence for the same seed. */
  constructor(seed: number, stream = 0) {
    const s = Math.floor(seed);
    const lo = s >>> 0;
    const hi = Math.floor(s / 4294967296) >>> 0;
    this.a = mix32(lo ^ 0x9e3779b9);
    this.b = mix32(hi ^ mix32(stream + 0x7f4a7c15));
    this.c = mix32(mix32(stream) ^ 0x632be5ab ^ lo);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** A new generator whose sequence depends only on this generator's seed state and `stream`. */
  static derive(seed: number, ...path: number[]): Rng {
    let stream = 0x1234567;
    for (const p of path) stream = mix32(stream ^ mix32(p + 0x6d2b79f5) ^ mix32(Math.floor(p / 4294967296)));
    return new Rng(seed, stream);
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform in (0, 1): safe for logarithms. */
  nextOpen(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Marsaglia polar method; the second variate is cached). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spareNormal;
    }
    let u = 0;
    let v = 0;
    let s = 0;
    do {
      u = this.next() * 2 - 1;
      v = this.next() * 2 - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    this.spareNormal = v * m;
    this.hasSpare = true;
    return u * m;
  }

  exponential(rate = 1): number {
    return -Math.log(this.nextOpen()) / rate;
  }

  /** Gamma(shape, 1) by Marsaglia–Tsang; shape < 1 handled by the usual boost. */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * this.nextOpen() ** (1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x = 0;
      let v = 0;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.nextOpen();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** A sample from Dirichlet(alpha · 1_k). */
  dirichlet(alpha: number, k: number): Float64Array {
    const out = new Float64Array(k);
    let sum = 0;
    for (let i = 0; i < k; i++) {
      const g = this.gamma(alpha);
      out[i] = g;
      sum += g;
    }
    if (sum === 0) {
      out[this.int(k)] = 1;
      return out;
    }
    for (let i = 0; i < k; i++) out[i] = (out[i] as number) / sum;
    return out;
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(arr: T): T {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = arr[i];
      arr[i] = arr[j];
      arr[j] = t;
    }
    return arr;
  }

  /** A random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }
}
