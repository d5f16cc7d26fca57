/**
 * Adaptive clipping to a target quantile (Andrew, Thakkar, McMahan & Ramaswamy, "Differentially
 * Private Learning with Adaptive Clipping", NeurIPS 2021). Each step, the server learns a NOISY count
 * of updates whose norm was within the current clip norm C, and moves C geometrically towards the
 * γ-quantile of update norms:
 *   b̃ = (Σᵢ 1[‖Δᵢ‖ ≤ C] + N(0, σ_b²)) / m,    C ← C · exp(−η (b̃ − γ)).
 * The count is a second Gaussian query on the same clients, so it costs privacy: releasing both is
 * as private as one Gaussian mechanism with noise multiplier z where z⁻² = σ_Δ⁻² + (2σ_b)⁻²
 * (their Theorem 1). `updateNoiseMultiplier` gives the σ_Δ that keeps the total at z, so the
 * accountants can keep using z.
 */
import { ConfigError, NonFiniteError } from '../../core/errors.ts';
import { addGaussianNoise, type RandomSource } from './noise.ts';

/**
 * Noise multiplier for the model update when the quantile count uses noise σ_b and the pair must
 * be as private as a single Gaussian with multiplier z: σ_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2).
 */
export function updateNoiseMultiplier(totalNoiseMultiplier: number, countNoiseStddev: number): number {
  const z = totalNoiseMultiplier;
  const sb = countNoiseStddev;
  if (!(Number.isFinite(z) && z > 0))
    throw new ConfigError([{ path: 'noiseMultiplier', message: `must be a finite number > 0, got ${z}` }]);
  if (!(Number.isFinite(sb) && sb > z / 2))
    throw new ConfigError([
      {
        path: 'countNoiseStddev',
        message: `must exceed noiseMultiplier/2 = ${z / 2} (the count alone would spend the whole budget), got ${sb}`,
      },
    ]);
  return 1 / Math.sqrt(1 / (z * z) - 1 / (4 * sb * sb));
}

export interface AdaptiveClipOptions {
  readonly initialNorm: number;
  /** γ: fraction of updates that should end up unclipped, in (0, 1). */
  readonly targetQuantile: number;
  /** η > 0: step size of the geometric update (0.2 in the paper). */
  readonly learningRate: number;
  /** σ_b > 0: standard deviation of the noise on the unclipped count. */
  readonly countNoiseStddev: number;
  /** Source of randomness for the count noise (default: WebCrypto). */
  readonly source?: RandomSource;
}

export class AdaptiveClipper {
  private current: number;
  private readonly options: AdaptiveClipOptions;

  constructor(options: AdaptiveClipOptions) {
    const issues = [];
    if (!(Number.isFinite(options.initialNorm) && options.initialNorm > 0))
      issues.push({
        path: 'initialNorm',
        message: `must be a finite number > 0, got ${options.initialNorm}`,
      });
    if (!(options.targetQuantile > 0 && options.targetQuantile < 1))
      issues.push({ path: 'targetQuantile', message: `must be in (0, 1), got ${options.targetQuantile}` });
    if (!(Number.isFinite(options.learningRate) && options.learningRate > 0))
      issues.push({
        path: 'learningRate',
        message: `must be a finite number > 0, got ${options.learningRate}`,
      });
    if (!(Number.isFinite(options.countNoiseStddev) && options.countNoiseStddev > 0))
      issues.push({
        path: 'countNoiseStddev',
        message: `must be a finite number > 0, got ${options.countNoiseStddev}`,
      });
    if (issues.length > 0) throw new ConfigError(issues, 'adaptive clipping');
    this.options = options;
    this.current = options.initialNorm;
  }

  /** The clip norm to use for the current step. */
  get norm(): number {
    return this.current;
  }

  /** Resumes at a clip norm an earlier run reached (a checkpoint's). */
  restore(norm: number): void {
    if (!(Number.isFinite(norm) && norm > 0))
      throw new ConfigError([{ path: 'norm', message: `must be a finite number > 0, got ${norm}` }]);
    this.current = norm;
  }

  /**
   * Ends a step: given the (unclipped) norms of this step's updates and the expected number of
   * updates per step m (public, e.g. the buffer size), privatizes the unclipped fraction and moves
   * the clip norm. Returns the noisy fraction b̃. Fails closed on a non-finite norm (nothing moves).
   */
  update(norms: readonly number[], expectedUpdates: number): number {
    if (!(Number.isFinite(expectedUpdates) && expectedUpdates > 0))
      throw new ConfigError([
        { path: 'expectedUpdates', message: `must be a finite number > 0, got ${expectedUpdates}` },
      ]);
    let unclipped = 0;
    for (const n of norms) {
      if (!(Number.isFinite(n) && n >= 0))
        throw new NonFiniteError(`update norm ${n} is not a finite non-negative number`);
      if (n <= this.current) unclipped++;
    }
    const noisy = addGaussianNoise(Float64Array.of(unclipped), {
      stddev: this.options.countNoiseStddev,
      bound: Math.max(1, norms.length),
      ...(this.options.source !== undefined ? { source: this.options.source } : {}),
    });
    const fraction = (noisy[0] as number) / expectedUpdates;
    this.current *= Math.exp(-this.options.learningRate * (fraction - this.options.targetQuantile));
    return fraction;
  }
}
