/**
 * Gaussian noise for DP from a CRYPTOGRAPHIC source, sampled so that floating-point artefacts do not
 * reveal the noised value.
 *
 * Source. The platform CSPRNG: node:crypto's randomFillSync in Node (OpenSSL), WebCrypto
 * `crypto.getRandomValues` elsewhere (browsers). Never Math.random, never the experiment Rng: DP noise
 * must be unpredictable to the adversary, and a seeded generator is not. Bytes are drawn in large
 * batches (up to 1 MiB per call, into a buffer reused between calls and wiped after use);
 * randomFillSync is about twice as fast as getRandomValues, which is capped at 64 KiB per call.
 *
 * Gaussians. The ziggurat method (Marsaglia & Tsang 2000, "The Ziggurat Method for Generating
 * Random Variables", J. Stat. Softw. 5(8)) with 128 layers, which is EXACT: it is a rejection
 * sampler whose accepted points are uniform under the density, so the only approximations are the
 * finite resolution of the uniforms and the last-bit accuracy of the table. Each draw takes 64 random
 * bits: 7 pick the layer, 1 the sign, 53 the position within the layer (so positions lie on a 2^-53
 * lattice, far finer than any snapping grid below). About 98.8% of draws are accepted by a single
 * comparison; the rest go through the wedge test (one exp) or, for the base layer, Marsaglia's exact
 * tail algorithm beyond r ≈ 3.44 (two logs per try). The layer index and the position come from
 * disjoint bits, avoiding the correlation flaw Doornik (2005) found in the original code. It replaced
 * Box–Muller (one log, sqrt, cos and sin per pair), which made noising 1M floats about twice as slow
 * and cut the tails at |z| ≈ 8.57; the ziggurat's tail reaches r + 53·ln 2 / r ≈ 14.1. The draw is
 * fused with the snapping below, so the normals never touch memory.
 *
 * Floating-point defence ("snapping" to a grid, after Mironov 2012 "On significance of the least
 * significant bits for differential privacy", and the granularity idea of Google's secure noise
 * generation). The attack: the set of floats that x + noise can take depends on the low-order bits
 * of x, so the output can reveal x exactly even though real-valued noise would not. Defence: all
 * outputs lie on ONE fixed grid g = 2^k, chosen from a public bound B on |x| so that every multiple
 * of g up to B + 15.1σ (B + (MAX_STANDARD_NORMAL + 1)·σ) is exactly representable in the output type. We round x to the grid
 * (x′ = g·round(x/g)), round the scaled noise to the grid (n′ = g·round(σz/g)), and add exactly.
 * Because rounding commutes with adding multiples of g, x′ + n′ = g·round((x′ + σz)/g): a
 * post-processing of the Gaussian mechanism applied to x′, whose possible outputs no longer depend
 * on x's low bits. Moving x to x′ changes each coordinate by ≤ g/2, so the L2 sensitivity grows by at
 * most (g/2)·√d — `snapSensitivityInflation` reports it; it is ~1e-6 of σ for float32.
 *
 * Residual risk (documented, not eliminated): the continuous z is only approximately Gaussian — the
 * 2^-53 position lattice, the tail cut at ≈ 14.1 (probability < 1e-44), the published r and v (13
 * significant digits) that leave the top layer's area off by ~1e-9 relative, and tables computed
 * with Math.exp/log/sqrt, accurate to about an ulp but not correctly rounded — so per-grid-cell
 * probabilities deviate from the ideal ones by a relative amount of order 1e-9 that the DP proof
 * does not cover (it would add about that much to ε per step). An exact discrete Gaussian sampler (Canonne, Kamath & Steinke 2020) would
 * remove this at a large speed cost.
 */
import { ConfigError, invalidArgument, NonFiniteError } from '../../core/errors.ts';

/** Where random bytes come from; the default is the platform CSPRNG. Tests may inject a fixed source. */
export interface RandomSource {
  fill(bytes: Uint8Array): void;
}

/** getRandomValues refuses more than 65,536 bytes per call. */
const MAX_RANDOM_BYTES = 65_536;

type RandomFill = (bytes: Uint8Array) => void;

/** node:crypto's randomFillSync without a static import (this module also runs in browsers). */
function nodeRandomFill(): RandomFill | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.('node:crypto') as
    | { randomFillSync?: (buf: Uint8Array) => Uint8Array }
    | undefined;
  const fill = mod?.randomFillSync;
  return fill === undefined ? undefined : (bytes) => void fill(bytes);
}

let platformFill: RandomFill | undefined;

function webCryptoFill(bytes: Uint8Array): void {
  const webCrypto = globalThis.crypto;
  if (webCrypto === undefined || typeof webCrypto.getRandomValues !== 'function')
    throw invalidArgument('no cryptographic random source (globalThis.crypto.getRandomValues) is available');
  for (let offset = 0; offset < bytes.length; offset += MAX_RANDOM_BYTES)
    webCrypto.getRandomValues(bytes.subarray(offset, Math.min(bytes.length, offset + MAX_RANDOM_BYTES)));
}

export const cryptoRandomSource: RandomSource = {
  fill(bytes: Uint8Array): void {
    platformFill ??= nodeRandomFill() ?? webCryptoFill;
    platformFill(bytes);
  },
};

const TWO_POW_53 = 2 ** 53;
const TWO_POW_32 = 2 ** 32;

/** Ziggurat layers (a power of two: 7 random bits pick one). */
const LAYERS = 128;
/** Start of the tail and the common layer area for 128 layers (Marsaglia & Tsang 2000, §2). */
export const ZIGGURAT_R = 3.442619855899;
const ZIGGURAT_V = 9.91256303526217e-3;
/** Largest |z| the sampler can return: the tail's r + (−ln 2^-53)/r. */
export const MAX_STANDARD_NORMAL = ZIGGURAT_R + (53 * Math.LN2) / ZIGGURAT_R;

const density = (x: number): number => Math.exp(-0.5 * x * x);

/**
 * Layer edges x[0..128]: x[0] = v/f(r) is the base layer's width (rectangle plus tail, area v),
 * x[1] = r, f(x[i+1]) = v/x[i] + f(x[i]) so that every layer i (heights f(x[i])..f(x[i+1]), width
 * x[i]) has area v, and x[128] = 0.
 */
export const ZIGGURAT_X: Float64Array = (() => {
  const x = new Float64Array(LAYERS + 1);
  x[0] = ZIGGURAT_V / density(ZIGGURAT_R);
  x[1] = ZIGGURAT_R;
  for (let i = 2; i < LAYERS; i++) {
    const prev = x[i - 1] as number;
    x[i] = Math.sqrt(-2 * Math.log(ZIGGURAT_V / prev + density(prev)));
  }
  x[LAYERS] = 0;
  return x;
})();
/** Position integers below x[i+1]/x[i]·2^53 lie under the next layer, entirely under the curve. */
const FAST_ACCEPT = Float64Array.from({ length: LAYERS }, (_, i) =>
  Math.floor(((ZIGGURAT_X[i + 1] as number) / (ZIGGURAT_X[i] as number)) * TWO_POW_53),
);
/**
 * The same test on the top 21 bits alone (conservative: a position whose top bits are below
 * ⌊x[i+1]/x[i]·2^21⌋ is below the exact bound; the few others take the exact path).
 */
const FAST_ACCEPT_HIGH = Int32Array.from({ length: LAYERS }, (_, i) =>
  Math.floor(((ZIGGURAT_X[i + 1] as number) / (ZIGGURAT_X[i] as number)) * 2 ** 21),
);
/** ±x[i]·2^-53 indexed by the low 8 bits of the first word (bit 7 the sign, bits 0–6 the layer). */
const SIGNED_STEP = Float64Array.from(
  { length: 2 * LAYERS },
  (_, j) => ((j & LAYERS) === 0 ? 1 : -1) * ((ZIGGURAT_X[j & (LAYERS - 1)] as number) / TWO_POW_53),
);
const LAYER_DENSITY = ZIGGURAT_X.map(density);

/** Words held between refills: 1 MiB, one randomFillSync call per 131,072 normals. */
const BUFFER_WORDS = 1 << 18;
/** One buffer kept for reuse; a stream takes it (or allocates its own) and returns it when done. */
let pooledWords: Uint32Array | null = null;

/**
 * A run of consecutive rejections that a working source produces with probability < 1e-300: a
 * source stuck on a rejected pattern must fail rather than spin.
 */
const MAX_TRIES = 200;

// Snap x and σz to whole multiples of g and add: scaling by the power of two 1/g is exact, the
// integer sum is exact, and g was chosen so the result is exact in the output type. Rounding is
// floor(a + 0.5) (round half up): in real arithmetic it satisfies r(a + k) = r(a) + k for integers k,
// which is all the snapping argument needs, and V8 runs it ~2.5× faster than Math.round (they differ
// only where a + 0.5 itself rounds, e.g. a = 0.5 − 2^-54, the ulp-level residual documented above).
// `!(|v| ≤ bound)` catches NaN, ±Infinity and out-of-bound values in one comparison.
interface SnapConstants {
  /** 1/g. */
  readonly invG: number;
  /** σ/g. */
  readonly stddevOverG: number;
  /** g × the output scale: the snapped integer sum times this is the output. */
  readonly outputStep: number;
  readonly bound: number;
}

/**
 * Standard normals by the ziggurat from one random source, reading words from a reusable buffer
 * that is refilled in large batches.
 */
class NormalStream {
  private readonly words: Uint32Array;
  private readonly signedWords: Int32Array;
  private used = 0;
  private available = 0;

  /** `planned`: how many normals the caller will ask for in all (so small requests draw few bytes). */
  constructor(
    private readonly source: RandomSource,
    private planned: number,
  ) {
    if (pooledWords !== null && planned * 2 >= 4096) {
      this.words = pooledWords;
      pooledWords = null;
    } else this.words = new Uint32Array(Math.min(BUFFER_WORDS, 2 * Math.max(planned, 1) + 64));
    this.signedWords = new Int32Array(this.words.buffer, this.words.byteOffset, this.words.length);
  }

  /** Hands the buffer back for reuse, wiping the unread words (never reused as randomness). */
  close(): void {
    this.words.fill(0);
    this.used = this.available = 0;
    if (this.words.length === BUFFER_WORDS) pooledWords = this.words;
  }

  private refill(): void {
    // Expected words: 2 per normal plus ~3% for rejections; the slack covers small requests.
    const want = Math.min(this.words.length, 2 * Math.ceil(Math.max(this.planned, 1) * 1.05) + 64);
    this.source.fill(new Uint8Array(this.words.buffer, this.words.byteOffset, want * 4));
    this.used = 0;
    this.available = want;
  }

  private word(): number {
    if (this.used === this.available) this.refill();
    return this.words[this.used++] as number;
  }

  /** A uniform in (0, 1] from 53 bits (so its log is finite). */
  private uniform(): number {
    const hi = this.word() >>> 11;
    return (hi * TWO_POW_32 + this.word() + 1) / TWO_POW_53;
  }

  /** Writes standard normals into out[start, end). */
  fill(out: Float64Array, start: number, end: number): void {
    // Signed view: V8 keeps int32 reads in registers, where uint32 ones above 2^31 become doubles.
    const words = this.signedWords;
    // Hot loop on locals (synced with the fields around the rare slow path): one integer comparison
    // accepts ~98.7% of draws, and the sign comes from a table rather than a branch that a CPU
    // would mispredict half the time.
    let used = this.used;
    let available = this.available;
    for (let i = start; i < end; i++) {
      if (available - used >= 2) {
        const w0 = words[used] as number;
        const high = w0 >>> 11;
        if (high < (FAST_ACCEPT_HIGH[w0 & (LAYERS - 1)] as number)) {
          out[i] =
            (high * TWO_POW_32 + ((words[used + 1] as number) >>> 0)) * (SIGNED_STEP[w0 & 255] as number);
          used += 2;
          continue;
        }
      }
      this.used = used;
      out[i] = this.slow();
      used = this.used;
      available = this.available;
    }
    this.used = used;
    this.planned -= end - start;
  }

  /**
   * out[i] = (snap(x[i]) + snap(σ·z_i))·outputStep for fresh normals z_i, fused with the draw so the
   * normals never touch memory. One loop for both element types: measured on 1M floats, it runs as
   * fast as a float32-only copy (the float64 call, used for single values, ~10% slower).
   */
  snapAdd(values: Float32Array | Float64Array, out: Float32Array | Float64Array, snap: SnapConstants): void {
    const { invG, stddevOverG, outputStep, bound } = snap;
    const words = this.signedWords;
    let used = this.used;
    let available = this.available;
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      if (!(Math.abs(v) <= bound)) throw badValue(i, v, bound);
      let z = 0;
      let fast = false;
      if (available - used >= 2) {
        const w0 = words[used] as number;
        const high = w0 >>> 11;
        if (high < (FAST_ACCEPT_HIGH[w0 & (LAYERS - 1)] as number)) {
          z = (high * TWO_POW_32 + ((words[used + 1] as number) >>> 0)) * (SIGNED_STEP[w0 & 255] as number);
          used += 2;
          fast = true;
        }
      }
      if (!fast) {
        this.used = used;
        this.planned = values.length - i;
        z = this.slow();
        used = this.used;
        available = this.available;
      }
      out[i] = (Math.floor(v * invG + 0.5) + Math.floor(stddevOverG * z + 0.5)) * outputStep;
    }
    this.used = used;
  }

  /** The full algorithm for one draw, starting from fresh words. */
  private slow(): number {
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const w0 = this.word();
      const position = (w0 >>> 11) * TWO_POW_32 + this.word();
      const layer = w0 & (LAYERS - 1);
      const negative = (w0 & LAYERS) !== 0;
      const z = position * ((ZIGGURAT_X[layer] as number) / TWO_POW_53);
      if (position < (FAST_ACCEPT[layer] as number)) return negative ? -z : z;
      if (layer === 0) {
        const t = this.tail();
        return negative ? -t : t;
      }
      // Wedge: a uniform height between the layer's bottom f(x[i]) and top f(x[i+1]).
      const bottom = LAYER_DENSITY[layer] as number;
      const y = bottom + this.uniform() * ((LAYER_DENSITY[layer + 1] as number) - bottom);
      if (y < density(z)) return negative ? -z : z;
    }
    throw invalidArgument(`random source rejected ${MAX_TRIES} ziggurat draws in a row: it is broken`);
  }

  /** Marsaglia (1964): an exact draw from the normal tail beyond r. */
  private tail(): number {
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const a = -Math.log(this.uniform()) / ZIGGURAT_R;
      const b = -Math.log(this.uniform());
      if (b + b >= a * a) return ZIGGURAT_R + a;
    }
    throw invalidArgument(`random source rejected ${MAX_TRIES} tail draws in a row: it is broken`);
  }
}

/** Fills `out` with standard normals (ziggurat on the cryptographic source by default). */
export function fillStandardNormal(
  out: Float64Array,
  source: RandomSource = cryptoRandomSource,
): Float64Array {
  const stream = new NormalStream(source, out.length);
  try {
    stream.fill(out, 0, out.length);
  } finally {
    stream.close();
  }
  return out;
}

/** Significand bits (with the implicit one) of the output element types. */
const SIGNIFICAND_BITS = { float32: 24, float64: 53 } as const;

/**
 * The snapping grid: the smallest power of two g such that every multiple of g with magnitude up to
 * bound + (MAX_STANDARD_NORMAL + 1)·σ is exactly representable.
 */
export function snapGranularity(stddev: number, bound: number, type: 'float32' | 'float64'): number {
  const reach = bound + (MAX_STANDARD_NORMAL + 1) * stddev;
  return 2 ** (Math.ceil(Math.log2(reach)) - SIGNIFICAND_BITS[type]);
}

/** Extra L2 sensitivity from snapping a d-dimensional input to the grid: (g/2)·√d. */
export function snapSensitivityInflation(granularity: number, dimension: number): number {
  return (granularity / 2) * Math.sqrt(dimension);
}

export interface NoiseOptions {
  /** Noise standard deviation σ (noise multiplier × sensitivity). */
  readonly stddev: number;
  /** Public bound on |x_i| (e.g. the clipping norm times the number of summed updates). */
  readonly bound: number;
  readonly source?: RandomSource;
  /**
   * Public constant the snapped result is multiplied by (default 1), e.g. 1/K for a mean: pure
   * post-processing of the snapped output, fused here to save a pass over the array.
   */
  readonly scale?: number;
}

/**
 * Returns x + N(0, σ²) per coordinate, snapped to the grid described above, in a new array of the
 * same type. Fails closed: non-finite inputs or |x_i| > bound throw and nothing is returned.
 */
export function addGaussianNoise<T extends Float32Array | Float64Array>(values: T, options: NoiseOptions): T {
  const { stddev, bound } = options;
  const issues = [];
  if (!(Number.isFinite(stddev) && stddev > 0))
    issues.push({ path: 'stddev', message: `must be a finite number > 0, got ${stddev}` });
  if (!(Number.isFinite(bound) && bound > 0))
    issues.push({ path: 'bound', message: `must be a finite number > 0, got ${bound}` });
  const scale = options.scale ?? 1;
  if (!(Number.isFinite(scale) && scale > 0))
    issues.push({ path: 'scale', message: `must be a finite number > 0, got ${scale}` });
  if (issues.length > 0) throw new ConfigError(issues, 'noise options');
  const type = values instanceof Float32Array ? 'float32' : 'float64';
  const g = snapGranularity(stddev, bound, type);
  const invG = 1 / g;
  const stddevOverG = stddev * invG;
  const out = (type === 'float32' ? new Float32Array(values.length) : new Float64Array(values.length)) as T;
  const snap: SnapConstants = { invG, stddevOverG, outputStep: g * scale, bound };
  // A bad value throws before `out` escapes.
  const normals = new NormalStream(options.source ?? cryptoRandomSource, values.length);
  try {
    normals.snapAdd(values, out, snap);
  } finally {
    normals.close();
  }
  return out;
}

/** The refusal for a value that is non-finite or outside the public bound. */
function badValue(i: number, v: number, bound: number): Error {
  if (v - v !== 0) return new NonFiniteError(`value ${i} is ${v}: refusing to add noise`);
  return invalidArgument(`|value ${i}| = ${Math.abs(v)} exceeds the public bound ${bound}`);
}
