/**
 * Closed-form leave-one-out (and leave-block-out) error of KRR and its gradient in log-hyperparameter
 * space.
 *
 * With A = K + λI, M = A⁻¹ and α = M y, refitting without a set B of points leaves residuals
 *   e_B = (M_BB)⁻¹ α_B
 * (for B = {i}: e_i = α_i / M_ii, the classic LOO formula). Serially correlated series make single-point
 * LOO optimistic (a point's time neighbours are near-copies of it), so contiguous blocks of b points are
 * the default validation signal for time series; b = 1 gives plain LOO. L = (1/n) Σ_B ‖e_B‖².
 *
 * Gradient (dM = −M dA M, dα = −M dA α, S_B = (M_BB)⁻¹):
 *   d e_B = S_B [ dα_B − dM_BB e_B ],   a_B = S_B e_B,  p_B = M_{:,B} a_B,  q_B = M_{:,B} e_B
 *   dL = (2/n) [ −(M a)ᵀ dA α + Σ_B p_Bᵀ dA q_B ]
 * For log λ (dA = λI) everything is O(n²). For log γ (dA = D = γ ∂K/∂γ) the block sum costs 2n² per
 * block; a random subset of blocks gives an unbiased estimate at a fraction of the O(n³/b) full cost.
 * We return the gradient of log L, which is scale-free, so one step size suits every series.
 */
import { OrchardError } from '../../core/errors.ts';
import { kernelFromStat, TRANSFORM_FLOPS } from './kernels.ts';
import { choleskyInPlace, choleskySolve } from './meter.ts';
import type { KrrWindow } from './window.ts';

export interface LooValue {
  readonly residuals: Float64Array;
  readonly mse: number;
  readonly alpha: Float64Array;
}

/** Contiguous blocks [start, end) of size b; a short remainder joins the last block. */
export function blocksOf(n: number, blockSize: number): Array<[number, number]> {
  if (!Number.isInteger(blockSize) || blockSize < 1)
    throw new OrchardError('INVALID_ARGUMENT', 'block size must be an integer >= 1');
  const count = Math.max(1, Math.floor(n / blockSize));
  const out: Array<[number, number]> = [];
  for (let k = 0; k < count; k++) out.push([k * blockSize, k === count - 1 ? n : (k + 1) * blockSize]);
  return out;
}

/** Cholesky factor of the diagonal block M_SS of the inverse, S = [start, end); the caller meters it. */
function factorInverseBlock(window: KrrWindow, start: number, end: number, what: string): Float64Array {
  const b = end - start;
  const mbb = new Float64Array(b * b);
  const l = new Float64Array(b * b);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < b; j++) mbb[i * b + j] = window.inverseAt(start + i, start + j);
  if (!choleskyInPlace(mbb, l, b, b))
    throw new OrchardError('INVALID_STATE', `${what} of the inverse is not positive definite`);
  return l;
}

/** e_B = (M_BB)⁻¹ α_B for one block, written into `out` at the block's positions. */
function blockResidual(
  window: KrrWindow,
  alpha: Float64Array,
  start: number,
  end: number,
  out: Float64Array,
): void {
  const b = end - start;
  if (b === 1) {
    out[start] = (alpha[start] as number) / window.inverseAt(start, start);
    window.meter.add(1);
    return;
  }
  const l = factorInverseBlock(window, start, end, 'a diagonal block');
  const rhs = alpha.slice(start, end);
  choleskySolve(l, b, b, rhs);
  out.set(rhs, start);
  window.meter.add((b * b * b) / 3 + 2 * b * b);
}

/** The left-out set S of a block [start, end): the block widened by `buffer` points each side, clipped. */
function bufferedSet(n: number, start: number, end: number, buffer: number): [number, number] {
  return [Math.max(0, start - buffer), Math.min(n, end + buffer)];
}

/**
 * e_S = (M_SS)⁻¹ α_S for S = block ∪ buffer; the block's part is written into `out`. Returns the
 * factor of M_SS and e_S (the gradient reuses both).
 */
function bufferedResidual(
  window: KrrWindow,
  alpha: Float64Array,
  start: number,
  end: number,
  buffer: number,
  out: Float64Array,
): { l: Float64Array; eS: Float64Array; s0: number; size: number } {
  const [s0, s1] = bufferedSet(window.size, start, end, buffer);
  const size = s1 - s0;
  const l = factorInverseBlock(window, s0, s1, 'a diagonal block');
  const eS = alpha.slice(s0, s1);
  choleskySolve(l, size, size, eS);
  for (let i = start; i < end; i++) out[i] = eS[i - s0] as number;
  window.meter.add((size * size * size) / 3 + 2 * size * size);
  return { l, eS, s0, size };
}

function checkBuffer(buffer: number): void {
  if (!Number.isInteger(buffer) || buffer < 0)
    throw new OrchardError('INVALID_ARGUMENT', 'buffer must be an integer >= 0');
}

/**
 * Leave-block-out residuals. With `buffer` = g > 0 each block B is refitted without B and its g
 * neighbours on each side (S = B ∪ buffer, e_S = (M_SS)⁻¹ α_S) and only B is scored: the neighbours'
 * features and h-step targets overlap B's, so leaving them in makes the error optimistic (h − 1 neighbours
 * share part of the target's future increments).
 */
export function looResiduals(window: KrrWindow, blockSize = 1, buffer = 0): LooValue {
  const n = window.size;
  checkBuffer(buffer);
  if (n < 2 * blockSize + buffer)
    throw new OrchardError(
      'INVALID_STATE',
      `leave-${blockSize}-out${buffer > 0 ? ` with a buffer of ${buffer}` : ''} needs at least ${2 * blockSize + buffer} points`,
    );
  const alpha = window.alpha();
  const residuals = new Float64Array(n);
  for (const [s, e] of blocksOf(n, blockSize)) {
    if (buffer > 0) bufferedResidual(window, alpha, s, e, buffer, residuals);
    else blockResidual(window, alpha, s, e, residuals);
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (residuals[i] as number) ** 2;
  window.meter.add(2 * n);
  return { residuals, mse: sum / n, alpha };
}

export interface LooGradient {
  readonly mse: number;
  /** ∂ log L / ∂ log λ */
  readonly dLogLambda: number;
  /** ∂ log L / ∂ log γ (exact when every block is used, else an unbiased block-subset estimate of dL) */
  readonly dLogGamma: number;
}

export interface LooGradientOptions {
  /** Contiguous block size b (1 = leave-one-out). */
  readonly blockSize?: number;
  /** Indices of the blocks used for the γ term; null = all (exact). */
  readonly blocks?: readonly number[] | null;
  /** Neighbours left out (not scored) on each side of a block; 0 = plain leave-block-out. */
  readonly buffer?: number;
}

/** Gradient of log leave-block-out MSE with respect to log λ and log γ. */
export function looGradient(window: KrrWindow, options: LooGradientOptions = {}): LooGradient {
  const blockSize = options.blockSize ?? 1;
  if ((options.buffer ?? 0) > 0) return bufferedLooGradient(window, blockSize, options);
  const n = window.size;
  const { residuals: e, mse, alpha } = looResiduals(window, blockSize);
  const meter = window.meter;
  const blocks = blocksOf(n, blockSize);
  // a_B = S_B e_B (same solve as the residual, applied to e_B)
  const a = new Float64Array(n);
  for (const [s, t] of blocks) blockResidual(window, e, s, t, a);
  const ma = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += window.inverseAt(i, j) * (a[j] as number);
    ma[i] = s;
  }
  meter.add(2 * n * n);
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  const blockPQ = (start: number, end: number) => {
    for (let r = 0; r < n; r++) {
      let sp = 0;
      let sq = 0;
      for (let j = start; j < end; j++) {
        const m = window.inverseAt(r, j);
        sp += m * (a[j] as number);
        sq += m * (e[j] as number);
      }
      p[r] = sp;
      q[r] = sq;
    }
    meter.add(4 * n * (end - start));
  };
  // λ: −(M a)ᵀ α + Σ_B p_Bᵀ q_B   (all blocks; O(n²) in total)
  let lambdaSum = 0;
  for (let i = 0; i < n; i++) lambdaSum -= (ma[i] as number) * (alpha[i] as number);
  for (const [s, t] of blocks) {
    blockPQ(s, t);
    for (let r = 0; r < n; r++) lambdaSum += (p[r] as number) * (q[r] as number);
  }
  meter.add(2 * n * (blocks.length + 1));
  const dLambda = ((2 / n) * window.lambda * lambdaSum) / mse;

  const d = window.logGammaDerivative();
  let first = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += (d[i * n + j] as number) * (alpha[j] as number);
    first -= (ma[i] as number) * s;
  }
  meter.add(2 * n * n + 2 * n);
  const chosen = options.blocks ?? blocks.map((_, k) => k);
  if (chosen.length === 0)
    throw new OrchardError('INVALID_ARGUMENT', 'empty block subset for the γ gradient');
  let second = 0;
  for (const k of chosen) {
    const block = blocks[k];
    if (block === undefined)
      throw new OrchardError('INVALID_ARGUMENT', `no block ${k} (window has ${blocks.length})`);
    blockPQ(block[0], block[1]);
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (d[r * n + j] as number) * (q[j] as number);
      second += (p[r] as number) * s;
    }
    meter.add(2 * n * n + 2 * n);
  }
  second *= blocks.length / chosen.length;
  const dGamma = ((2 / n) * (first + second)) / mse;
  return { mse, dLogLambda: dLambda, dLogGamma: dGamma };
}

function chosenBlocks(options: LooGradientOptions, count: number): readonly number[] {
  const chosen = options.blocks ?? Array.from({ length: count }, (_, k) => k);
  if (chosen.length === 0)
    throw new OrchardError('INVALID_ARGUMENT', 'empty block subset for the γ gradient');
  for (const k of chosen)
    if (!Number.isInteger(k) || k < 0 || k >= count)
      throw new OrchardError('INVALID_ARGUMENT', `no block ${k} (window has ${count})`);
  return chosen;
}

/**
 * Gradient of log buffered leave-block-out MSE. Per block, with ẽ = e_S zeroed on the buffer,
 * a_S = (M_SS)⁻¹ ẽ, p_S = M_{:,S} a_S, q_S = M_{:,S} e_S (as for the recent errors):
 *   dL = (2/n) Σ_S p_Sᵀ dA (q_S − α) = (2/n) [ −Pᵀ dA α + Σ_S p_Sᵀ dA q_S ],  P = Σ_S p_S.
 * log λ: all blocks, O(n²(1 + 2g/b)); log γ: −Pᵀ D α exactly (one n² product) and the second sum over
 * the chosen blocks (2n² each), scaled to an unbiased estimate — the same split as the unbuffered case.
 */
function bufferedLooGradient(window: KrrWindow, blockSize: number, options: LooGradientOptions): LooGradient {
  const buffer = options.buffer ?? 0;
  const n = window.size;
  const meter = window.meter;
  const { mse, alpha } = looResiduals(window, blockSize, buffer);
  const blocks = blocksOf(n, blockSize);
  const chosen = new Set(chosenBlocks(options, blocks.length));
  const d = window.logGammaDerivative();
  const bigP = new Float64Array(n);
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  const scratch = new Float64Array(n);
  let lambdaSum = 0;
  let second = 0;
  blocks.forEach(([start, end], k) => {
    const { l, eS, s0, size } = bufferedResidual(window, alpha, start, end, buffer, scratch);
    const a = new Float64Array(size);
    for (let i = start; i < end; i++) a[i - s0] = eS[i - s0] as number;
    choleskySolve(l, size, size, a);
    meter.add(2 * size * size);
    for (let r = 0; r < n; r++) {
      let sp = 0;
      let sq = 0;
      for (let j = 0; j < size; j++) {
        const m = window.inverseAt(r, s0 + j);
        sp += m * (a[j] as number);
        sq += m * (eS[j] as number);
      }
      p[r] = sp;
      q[r] = sq;
      bigP[r] = (bigP[r] as number) + sp;
      lambdaSum += sp * (sq - (alpha[r] as number));
    }
    meter.add(4 * n * size + 4 * n);
    if (chosen.has(k)) {
      for (let r = 0; r < n; r++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += (d[r * n + j] as number) * (q[j] as number);
        second += (p[r] as number) * s;
      }
      meter.add(2 * n * n + 2 * n);
    }
  });
  second *= blocks.length / chosen.size;
  let first = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += (d[i * n + j] as number) * (alpha[j] as number);
    first -= (bigP[i] as number) * s;
  }
  meter.add(2 * n * n + 2 * n);
  const dLambda = ((2 / n) * window.lambda * lambdaSum) / mse;
  const dGamma = ((2 / n) * (first + second)) / mse;
  return { mse, dLogLambda: dLambda, dLogGamma: dGamma };
}

/**
 * The most recent forecast errors as a validation signal: the newest m points of the window are
 * predicted by the model refitted WITHOUT them and without the h−1 points before them (whose targets
 * reach into the validation period), i.e. a rolling-origin forecast of the latest data from the older
 * data. With S = gap ∪ B (B the newest m points), e_S = (M_SS)⁻¹ α_S and only the B part is scored:
 * L = (1/m) Σ_{i∈B} e_i². Gradient, with ẽ = e_S zeroed on the gap, a = (M_SS)⁻¹ ẽ, p = M_{:,S} a,
 * q = M_{:,S} e_S:  dL = (2/m) pᵀ dA (q − α), so dA = λI costs O(n·|S|) and dA = γ∂K/∂γ one n² product.
 */
export interface RecentErrors {
  /** Residuals (target − forecast) of the newest m points, oldest first. */
  readonly residuals: Float64Array;
  readonly mse: number;
}

function recentSet(window: KrrWindow, recent: number, gap: number): { start: number; scored: number } {
  const n = window.size;
  if (!Number.isInteger(recent) || recent < 1 || !Number.isInteger(gap) || gap < 0)
    throw new OrchardError('INVALID_ARGUMENT', 'recent must be an integer >= 1 and gap >= 0');
  if (n - recent - gap < 2)
    throw new OrchardError(
      'INVALID_STATE',
      `a window of ${n} cannot hold out ${recent} recent points and a gap of ${gap}`,
    );
  return { start: n - recent - gap, scored: n - recent };
}

/** Cholesky factor of M_SS for S = [start, n) (|S|³/3 flops). */
function factorTail(window: KrrWindow, start: number): { l: Float64Array; s: number } {
  const s = window.size - start;
  const l = factorInverseBlock(window, start, window.size, 'the trailing block');
  window.meter.add((s * s * s) / 3);
  return { l, s };
}

export function recentResiduals(window: KrrWindow, recent: number, gap = 0): RecentErrors {
  const { start, scored } = recentSet(window, recent, gap);
  const alpha = window.alpha();
  const { l, s } = factorTail(window, start);
  const eS = alpha.slice(start);
  choleskySolve(l, s, s, eS);
  window.meter.add(2 * s * s + 2 * recent);
  const residuals = eS.slice(scored - start);
  let sum = 0;
  for (const r of residuals) sum += r * r;
  return { residuals, mse: sum / recent };
}

/** Gradient of log(recent forecast MSE) with respect to log λ and log γ (exact, no block sampling). */
export function recentGradient(window: KrrWindow, recent: number, gap = 0): LooGradient {
  const { start, scored } = recentSet(window, recent, gap);
  const n = window.size;
  const meter = window.meter;
  const alpha = window.alpha();
  const { l, s } = factorTail(window, start);
  const eS = alpha.slice(start);
  choleskySolve(l, s, s, eS);
  const a = new Float64Array(s);
  let sum = 0;
  for (let k = scored - start; k < s; k++) {
    a[k] = eS[k] as number;
    sum += (eS[k] as number) ** 2;
  }
  choleskySolve(l, s, s, a);
  meter.add(4 * s * s + 2 * recent);
  const mse = sum / recent;
  // p = M_{:,S} a, r = M_{:,S} e_S − α
  const p = new Float64Array(n);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sp = 0;
    let sq = 0;
    for (let k = 0; k < s; k++) {
      const m = window.inverseAt(i, start + k);
      sp += m * (a[k] as number);
      sq += m * (eS[k] as number);
    }
    p[i] = sp;
    r[i] = sq - (alpha[i] as number);
  }
  meter.add(4 * n * s + n);
  let lambdaSum = 0;
  for (let i = 0; i < n; i++) lambdaSum += (p[i] as number) * (r[i] as number);
  meter.add(2 * n);
  const d = window.logGammaDerivative();
  let gammaSum = 0;
  for (let i = 0; i < n; i++) {
    let t = 0;
    for (let j = 0; j < n; j++) t += (d[i * n + j] as number) * (r[j] as number);
    gammaSum += (p[i] as number) * t;
  }
  meter.add(2 * n * n + 2 * n);
  const scale = 2 / recent / mse;
  return { mse, dLogLambda: scale * window.lambda * lambdaSum, dLogGamma: scale * gammaSum };
}

/**
 * The most recent forecast error (the value `recentResiduals` gives) at OTHER hyperparameters (λ', γ'),
 * by a direct refit on the older points only: with O = the n − m − gap oldest points, build
 * K_OO(γ') + λ'I from the stored pair statistics, factor it (|O|³/3), and forecast the newest m points
 * from their stored statistics to O. Nothing in the window changes. At n = 288, m = 96 this is about a
 * ninth of the n³ refresh a gradient step costs, which makes an occasional coarse probe of neighbouring
 * hyperparameters affordable. Returns null when K_OO + λ'I is not numerically positive definite.
 */
export function recentErrorAt(
  window: KrrWindow,
  recent: number,
  gap: number,
  lambda: number,
  gamma: number,
): RecentErrors | null {
  const { start: o, scored } = recentSet(window, recent, gap);
  const n = window.size;
  const meter = window.meter;
  const kernel = window.kernel;
  const a = new Float64Array(o * o);
  for (let i = 0; i < o; i++) {
    for (let j = 0; j <= i; j++) {
      const k = kernelFromStat(kernel, window.statAt(i, j), gamma);
      a[i * o + j] = k;
      a[j * o + i] = k;
    }
    a[i * o + i] = (a[i * o + i] as number) + lambda;
  }
  const transforms = (o * (o + 1)) / 2 + (n - scored) * o;
  meter.kernelTransforms += transforms;
  meter.add(transforms * TRANSFORM_FLOPS + o);
  const l = new Float64Array(o * o);
  meter.add((o * o * o) / 3);
  if (!choleskyInPlace(a, l, o, o)) return null;
  const y = window.targets();
  const alpha = y.slice(0, o);
  choleskySolve(l, o, o, alpha);
  meter.add(2 * o * o);
  const residuals = new Float64Array(n - scored);
  let sum = 0;
  for (let i = scored; i < n; i++) {
    let f = 0;
    for (let j = 0; j < o; j++)
      f += kernelFromStat(kernel, window.statAt(i, j), gamma) * (alpha[j] as number);
    const e = (y[i] as number) - f;
    residuals[i - scored] = e;
    sum += e * e;
  }
  meter.add((n - scored) * (2 * o + 3));
  return { residuals, mse: sum / (n - scored) };
}

/**
 * Whether `b` forecasts the same points significantly better than `a`: the squared-error differences
 * d_i = a_i² − b_i² averaged over consecutive blocks of `block` points (h-step forecast errors overlap
 * for h − 1 steps, so blocks of h are closer to independent), and the mean of the block means must exceed
 * `z` standard errors. With fewer than 2 blocks it falls back to comparing the means.
 */
export function significantlyBetter(a: Float64Array, b: Float64Array, block: number, z: number): boolean {
  const m = Math.min(a.length, b.length);
  const count = Math.floor(m / Math.max(1, block));
  if (count < 2) {
    let da = 0;
    let db = 0;
    for (let i = 0; i < m; i++) {
      da += (a[i] as number) ** 2;
      db += (b[i] as number) ** 2;
    }
    return db < da;
  }
  const size = Math.floor(m / count);
  const means = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    let s = 0;
    const end = k === count - 1 ? m : (k + 1) * size;
    for (let i = k * size; i < end; i++) s += (a[i] as number) ** 2 - (b[i] as number) ** 2;
    means[k] = s / (end - k * size);
  }
  let mean = 0;
  for (const v of means) mean += v;
  mean /= count;
  let v2 = 0;
  for (const v of means) v2 += (v - mean) ** 2;
  const se = Math.sqrt(v2 / (count - 1) / count);
  return mean > z * se && mean > 0;
}
