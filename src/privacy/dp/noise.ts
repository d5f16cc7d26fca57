/**
 * Gaussian noise for DP from a CRYPTOGRAPHIC source, sampled so that floating-point artefacts do not
 * reveal the noised value.
 *
 * Source. WebCrypto `crypto.getRandomValues` (the global in Node ≥ 19 and in browsers; Node backs it
 * with OpenSSL's CSPRNG). Never Math.random, never the experiment Rng: DP noise must be
 * unpredictable to the adversary, and a seeded generator is not.
 *
 * Uniforms. Each uniform uses a full 53 random bits k: u = (k + 1)/2^53 ∈ (0, 1] (exact in a
 * double), so log(u) is always finite and all 2^53 values are equally likely.
 *
 * Gaussians. Box–Muller: r = √(−2 ln u₁), z = (r cos 2πu₂, r sin 2πu₂). (Marsaglia's polar method
 * would skip cos and sin, about 40% faster, but it rejects draws and cannot give exactly z = 0 from
 * any byte pattern, which the deterministic test sources of the adaptive clipper rely on.)
 *
 * Floating-point defence ("snapping" to a grid, after Mironov 2012 "On significance of the least
 * significant bits for differential privacy", and the granularity idea of Google's secure noise
 * generation). The attack: the set of floats that x + noise can take depends on the low-order bits
 * of x, so the output can reveal x exactly even though real-valued noise would not. Defence: all
 * outputs lie on ONE fixed grid g = 2^k, chosen from a public bound B on |x| so that every multiple
 * of g up to B + 9σ is exactly representable in the output type. We round x to the grid
 * (x′ = g·round(x/g)), round the scaled noise to the grid (n′ = g·round(σz/g)), and add exactly.
 * Because rounding commutes with adding multiples of g, x′ + n′ = g·round((x′ + σz)/g): a
 * post-processing of the Gaussian mechanism applied to x′, whose possible outputs no longer depend
 * on x's low bits. Moving x to x′ changes each coordinate by ≤ g/2, so the L2 sensitivity grows by at
 * most (g/2)·√d — `snapSensitivityInflation` reports it; it is ~1e-6 of σ for float32.
 *
 * Residual risk (documented, not eliminated): the continuous z is only approximately Gaussian —
 * 53-bit uniforms cut the tails at |z| ≤ √(2·53·ln 2) ≈ 8.57, and Math.log/cos/sin are accurate to
 * about an ulp but not correctly rounded — so per-grid-cell probabilities deviate from the ideal
 * ones by a tiny relative amount that the DP proof does not cover. An exact discrete Gaussian
 * sampler (Canonne, Kamath & Steinke 2020) would remove this at a large speed cost.
 */
import { ConfigError, invalidArgument, NonFiniteError } from '../../core/errors.ts';

/** Where random bytes come from; the default is WebCrypto. Tests may inject a fixed source. */
export interface RandomSource {
  fill(bytes: Uint8Array): void;
}

/** getRandomValues refuses more than 65,536 bytes per call. */
const MAX_RANDOM_BYTES = 65_536;

export const cryptoRandomSource: RandomSource = {
  fill(bytes: Uint8Array): void {
    const webCrypto = globalThis.crypto;
    if (webCrypto === undefined || typeof webCrypto.getRandomValues !== 'function')
      throw invalidArgument(
        'no cryptographic random source (globalThis.crypto.getRandomValues) is available',
      );
    for (let offset = 0; offset < bytes.length; offset += MAX_RANDOM_BYTES)
      webCrypto.getRandomValues(bytes.subarray(offset, Math.min(bytes.length, offset + MAX_RANDOM_BYTES)));
  },
};

const TWO_POW_53 = 2 ** 53;
const TWO_POW_32 = 2 ** 32;
/** |z| from Box–Muller with 53-bit uniforms never exceeds √(−2 ln 2^-53) ≈ 8.57. */
export const MAX_STANDARD_NORMAL = Math.sqrt(-2 * Math.log(1 / TWO_POW_53));

/** Pairs (16 bytes each) drawn per call to the source: 64 KiB, getRandomValues' maximum. */
const PAIRS_PER_FILL = MAX_RANDOM_BYTES / 16;

/**
 * Standard normals by Box–Muller from one random source, holding 64 KiB of random words between
 * calls, so a long run of chunks costs one getRandomValues per 64 KiB and no allocation.
 */
class NormalStream {
  private readonly words = new Uint32Array(PAIRS_PER_FILL * 4); // 2 uniforms × 2 words per pair
  private readonly bytes = new Uint8Array(this.words.buffer);
  private used = 0;
  private available = 0;

  /** `planned`: how many normals the caller will ask for in all (so small requests draw few bytes). */
  constructor(
    private readonly source: RandomSource,
    private planned: number,
  ) {}

  private refill(): void {
    const pairs = Math.min(PAIRS_PER_FILL, Math.ceil(Math.max(this.planned, 1) / 2));
    this.source.fill(this.bytes.subarray(0, pairs * 16));
    this.used = 0;
    this.available = pairs * 4;
  }

  /** Writes standard normals into out[start, end); the second normal of a pair is kept for the next
   *  call only within one call (an odd tail discards it, as before). */
  fill(out: Float64Array, start: number, end: number): void {
    const words = this.words;
    // Hot loop on locals; the object's fields are synced around refills.
    let used = this.used;
    let available = this.available;
    for (let i = start; i < end; i += 2) {
      if (used === available) {
        this.planned -= i - start;
        start = i;
        this.refill();
        used = 0;
        available = this.available;
      }
      // 53 bits from two 32-bit words: 21 high bits and 32 low bits.
      const u1 =
        (((words[used] as number) >>> 11) * TWO_POW_32 + (words[used + 1] as number) + 1) / TWO_POW_53;
      const u2 =
        (((words[used + 2] as number) >>> 11) * TWO_POW_32 + (words[used + 3] as number) + 1) / TWO_POW_53;
      used += 4;
      const r = Math.sqrt(-2 * Math.log(u1));
      const angle = 2 * Math.PI * u2;
      out[i] = r * Math.cos(angle);
      if (i + 1 < end) out[i + 1] = r * Math.sin(angle);
    }
    this.used = used;
    this.planned -= end - start;
  }
}

/** Fills `out` with standard normals (full-precision Box–Muller). */
export function fillStandardNormal(
  out: Float64Array,
  source: RandomSource = cryptoRandomSource,
): Float64Array {
  new NormalStream(source, out.length).fill(out, 0, out.length);
  return out;
}

/** Normals drawn per chunk by addGaussianNoise. */
const NOISE_CHUNK = 8192;

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
  // Noise is drawn in chunks (no full-size temporary); a bad value throws before `out` escapes.
  const noise = new Float64Array(Math.min(values.length, NOISE_CHUNK));
  const normals = new NormalStream(options.source ?? cryptoRandomSource, values.length);
  for (let start = 0; start < values.length; start += NOISE_CHUNK) {
    const end = Math.min(values.length, start + NOISE_CHUNK);
    normals.fill(noise, 0, end - start);
    // One monomorphic loop per element type (a shared generic loop runs ~2× slower in V8).
    if (type === 'float32')
      snapAdd32(
        values as Float32Array,
        out as Float32Array,
        noise,
        start,
        end,
        invG,
        stddevOverG,
        g * scale,
        bound,
      );
    else
      snapAdd64(
        values as Float64Array,
        out as Float64Array,
        noise,
        start,
        end,
        invG,
        stddevOverG,
        g * scale,
        bound,
      );
  }
  return out;
}

/** The refusal for a value that is non-finite or outside the public bound. */
function badValue(i: number, v: number, bound: number): Error {
  if (v - v !== 0) return new NonFiniteError(`value ${i} is ${v}: refusing to add noise`);
  return invalidArgument(`|value ${i}| = ${Math.abs(v)} exceeds the public bound ${bound}`);
}

// Snap x and σz to whole multiples of g and add: scaling by the power of two 1/g is exact, the
// integer sum is exact, and g was chosen so the result is exact in the output type. Rounding is
// floor(a + 0.5) (round half up): in real arithmetic it satisfies r(a + k) = r(a) + k for integers k,
// which is all the snapping argument needs, and V8 runs it ~2.5× faster than Math.round (they differ
// only where a + 0.5 itself rounds, e.g. a = 0.5 − 2^-54, the ulp-level residual documented above).
// `!(|v| ≤ bound)` catches NaN, ±Infinity and out-of-bound values in one comparison.
function snapAdd32(
  values: Float32Array,
  out: Float32Array,
  noise: Float64Array,
  start: number,
  end: number,
  invG: number,
  stddevOverG: number,
  /** g × the output scale: the snapped integer sum times this is the output. */
  outputStep: number,
  bound: number,
): void {
  for (let i = start; i < end; i++) {
    const v = values[i] as number;
    if (!(Math.abs(v) <= bound)) throw badValue(i, v, bound);
    out[i] =
      (Math.floor(v * invG + 0.5) + Math.floor(stddevOverG * (noise[i - start] as number) + 0.5)) *
      outputStep;
  }
}

function snapAdd64(
  values: Float64Array,
  out: Float64Array,
  noise: Float64Array,
  start: number,
  end: number,
  invG: number,
  stddevOverG: number,
  /** g × the output scale: the snapped integer sum times this is the output. */
  outputStep: number,
  bound: number,
): void {
  for (let i = start; i < end; i++) {
    const v = values[i] as number;
    if (!(Math.abs(v) <= bound)) throw badValue(i, v, bound);
    out[i] =
      (Math.floor(v * invG + 0.5) + Math.floor(stddevOverG * (noise[i - start] as number) + 0.5)) *
      outputStep;
  }
}
