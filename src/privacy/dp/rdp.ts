/**
 * Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism (sensitivity 1, noise standard
 * deviation σ, each record included independently with probability q).
 *
 * Per step, the RDP of order α is log(A_α)/(α − 1) with A_α from Mironov, Talwar & Zhang, "Rényi
 * Differential Privacy of the Sampled Gaussian Mechanism" (2019):
 * - integer α: the binomial expansion A_α = Σ_k C(α,k) q^k (1−q)^(α−k) exp((k² − k)/(2σ²));
 * - fractional α: the two convergent series of their Section 3.3 (split at z₀ = σ² log(1/q − 1) + ½);
 * - q = 1: the plain Gaussian mechanism, α/(2σ²).
 * Everything is summed in log space. RDP composes additively over steps.
 *
 * Conversion to (ε, δ): the improved bound of Balle, Barthe, Gaboardi, Hsu & Sato, "Hypothesis
 * Testing Interpretations and Rényi Differential Privacy" (AISTATS 2020, Theorem 21):
 *   ε = rdp(α) + log((α − 1)/α) − (log δ + log α)/(α − 1),
 * minimised over the order grid — the same conversion Opacus's `get_privacy_spent` uses, so our
 * figures are comparable with Opacus's.
 */
import { ConfigError } from '../../core/errors.ts';
import { logAddExp, logErfc, logSubExp } from './special.ts';
import { assertMechanism } from './validate.ts';

/** Opacus's default grid: 1.1, 1.2, …, 11.0 and 12, 13, …, 63. */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 100 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
]);

/** log A_α for integer α ≥ 2 by the binomial expansion. */
function logAInteger(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let logBinom = 0; // log C(α, 0)
  let logA = Number.NEGATIVE_INFINITY;
  for (let k = 0; k <= alpha; k++) {
    if (k > 0) logBinom += Math.log(alpha - k + 1) - Math.log(k);
    const term = logBinom + k * logQ + (alpha - k) * log1mQ + (k * k - k) / (2 * sigma * sigma);
    logA = logAddExp(logA, term);
  }
  return logA;
}

/**
 * log A_α for fractional α > 1 by the two-series method. A_α = ∫ μ₀ (μ/μ₀)^α with μ₀ = N(0, σ²),
 * μ = (1−q)μ₀ + qN(1, σ²); splitting the integral at z₀ (where (1−q)μ₀ = qμ₁) makes both
 * generalised binomial series converge. Each term carries the Gaussian mass of its half-line,
 * written with erfc. Generalised binomial coefficients alternate in sign once i > α, so the
 * partial sums are kept as (log of) positive numbers with logAddExp / logSubExp.
 */
function logAFractional(q: number, sigma: number, alpha: number): number {
  const sigma2 = sigma * sigma;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const z0 = sigma2 * Math.log(1 / q - 1) + 0.5;
  const denom = Math.SQRT2 * sigma;
  let lower = Number.NEGATIVE_INFINITY; // series over x ≤ z₀
  let upper = Number.NEGATIVE_INFINITY; // series over x > z₀
  let logAbsBinom = 0; // log |C(α, i)|
  let binomSign = 1;
  for (let i = 0; i < 100_000; i++) {
    if (i > 0) {
      const factor = (alpha - (i - 1)) / i;
      if (factor < 0) binomSign = -binomSign;
      logAbsBinom += Math.log(Math.abs(factor));
    }
    const j = alpha - i;
    const logT0 = logAbsBinom + i * logQ + j * log1mQ;
    const logT1 = logAbsBinom + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / denom);
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / denom);
    const logS0 = logT0 + (i * i - i) / (2 * sigma2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma2) + logE1;
    if (binomSign > 0) {
      lower = logAddExp(lower, logS0);
      upper = logAddExp(upper, logS1);
    } else {
      lower = logSubExp(lower, logS0);
      upper = logSubExp(upper, logS1);
    }
    // Past i > α the terms shrink geometrically; stop once they no longer move the sum (≈ 2^-58).
    if (i > alpha && Math.max(logS0, logS1) < logAddExp(lower, upper) - 40) break;
  }
  return logAddExp(lower, upper);
}

/** RDP of order α > 1 of ONE step of the subsampled Gaussian mechanism. */
export function rdpSubsampledGaussianStep(
  samplingRate: number,
  noiseMultiplier: number,
  order: number,
): number {
  assertMechanism({ samplingRate, noiseMultiplier });
  if (!(order > 1 && Number.isFinite(order)))
    throw new ConfigError(
      [{ path: 'order', message: `must be a finite number > 1, got ${order}` }],
      'RDP order',
    );
  if (samplingRate === 1) return order / (2 * noiseMultiplier * noiseMultiplier);
  const logA = Number.isInteger(order)
    ? logAInteger(samplingRate, noiseMultiplier, order)
    : logAFractional(samplingRate, noiseMultiplier, order);
  return logA / (order - 1);
}

export interface RdpInput {
  readonly noiseMultiplier: number;
  readonly samplingRate: number;
  readonly steps: number;
  readonly orders?: readonly number[];
}

/** RDP after `steps` compositions, one value per order (same order as `orders`). */
export function computeRdp(input: RdpInput): number[] {
  const { noiseMultiplier, samplingRate, steps } = input;
  assertMechanism({ noiseMultiplier, samplingRate, steps });
  const orders = input.orders ?? DEFAULT_RDP_ORDERS;
  return orders.map((a) => steps * rdpSubsampledGaussianStep(samplingRate, noiseMultiplier, a));
}

export interface RdpEpsilon {
  readonly epsilon: number;
  /** The order at which the bound was tightest. */
  readonly order: number;
}

/** Smallest ε over the orders by the Balle et al. (2020) conversion; clamped at 0. */
export function rdpToEpsilon(orders: readonly number[], rdp: readonly number[], delta: number): RdpEpsilon {
  assertMechanism({ delta });
  if (orders.length !== rdp.length || orders.length === 0)
    throw new ConfigError([
      { path: 'orders', message: 'need one RDP value per order, and at least one order' },
    ]);
  let best: RdpEpsilon = { epsilon: Number.POSITIVE_INFINITY, order: Number.NaN };
  const logDelta = Math.log(delta);
  for (let i = 0; i < orders.length; i++) {
    const a = orders[i] as number;
    const r = rdp[i] as number;
    if (!(a > 1) || Number.isNaN(r)) continue;
    const eps = r + Math.log1p(-1 / a) - (logDelta + Math.log(a)) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

export interface EpsilonInput extends RdpInput {
  readonly delta: number;
}

/** (ε, δ)-DP guarantee of `steps` steps of the subsampled Gaussian mechanism by RDP accounting. */
export function rdpEpsilon(input: EpsilonInput): RdpEpsilon {
  assertMechanism({
    noiseMultiplier: input.noiseMultiplier,
    samplingRate: input.samplingRate,
    steps: input.steps,
    delta: input.delta,
  });
  const orders = input.orders ?? DEFAULT_RDP_ORDERS;
  return rdpToEpsilon(orders, computeRdp({ ...input, orders }), input.delta);
}

/**
 * Running RDP ledger for a training run: records server steps as they happen (possibly with
 * different sampling rates or noise multipliers) and reports the (ε, δ) spent so far, or what a
 * planned step would cost, so a driver can stop before a budget is exceeded.
 */
export class RdpAccountant {
  readonly orders: readonly number[];
  private readonly total: number[];
  private readonly perStepCache = new Map<string, readonly number[]>();
  private stepCount = 0;

  constructor(orders: readonly number[] = DEFAULT_RDP_ORDERS) {
    if (orders.length === 0 || orders.some((a) => !(a > 1 && Number.isFinite(a))))
      throw new ConfigError([
        { path: 'orders', message: 'need at least one order, each a finite number > 1' },
      ]);
    this.orders = [...orders];
    this.total = orders.map(() => 0);
  }

  /** Steps recorded so far. */
  get steps(): number {
    return this.stepCount;
  }

  private perStep(samplingRate: number, noiseMultiplier: number): readonly number[] {
    const key = `${samplingRate}:${noiseMultiplier}`;
    let rdp = this.perStepCache.get(key);
    if (rdp === undefined) {
      rdp = computeRdp({ samplingRate, noiseMultiplier, steps: 1, orders: this.orders });
      this.perStepCache.set(key, rdp);
    }
    return rdp;
  }

  /** Records `count` steps with sampling rate q and noise multiplier σ. */
  record(samplingRate: number, noiseMultiplier: number, count = 1): void {
    assertMechanism({ samplingRate, noiseMultiplier, steps: count });
    const rdp = this.perStep(samplingRate, noiseMultiplier);
    for (let i = 0; i < this.total.length; i++)
      this.total[i] = (this.total[i] as number) + count * (rdp[i] as number);
    this.stepCount += count;
  }

  /** (ε, δ) spent by the recorded steps (ε = 0 before any step). */
  epsilon(delta: number): RdpEpsilon {
    if (this.stepCount === 0) {
      assertMechanism({ delta });
      return { epsilon: 0, order: Number.NaN };
    }
    return rdpToEpsilon(this.orders, this.total, delta);
  }

  /** ε after `count` more steps with (q, σ), without recording them. */
  epsilonAfter(delta: number, samplingRate: number, noiseMultiplier: number, count = 1): number {
    assertMechanism({ delta, samplingRate, noiseMultiplier, steps: count });
    const rdp = this.perStep(samplingRate, noiseMultiplier);
    return rdpToEpsilon(
      this.orders,
      this.total.map((r, i) => r + count * (rdp[i] as number)),
      delta,
    ).epsilon;
  }
}
