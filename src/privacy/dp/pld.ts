/**
 * Privacy loss distribution (PLD) accountant for the Poisson-subsampled Gaussian mechanism: tighter
 * than RDP because it composes the exact distribution of the privacy loss instead of a bound on
 * its moments (Koskela, Jälkö & Honkela 2020; Meiser & Mohammadi 2018; the approach of Google's
 * dp_accounting).
 *
 * For neighbouring datasets D (with the record) and D' (without), one step releases
 *   P = (1 − q)·N(0, σ²) + q·N(1, σ²)   on D,        Q = N(0, σ²)   on D'.
 * The privacy loss L(x) = log(P(x)/Q(x)) = log(1 − q + q·exp((2x − 1)/(2σ²))) is monotone in x.
 * We account both directions ("remove": L under X ~ P; "add": −L under X ~ Q) and report the worse.
 *
 * Discretization is PESSIMISTIC: every loss value is rounded UP to the grid kΔ, mass beyond the
 * truncated tails goes either to the largest possible loss (when that is finite) or to +∞ (counted
 * in full in δ). Since the hockey-stick divergence δ(ε) = E[(1 − e^(ε−L))₊] + P(L = ∞) increases
 * with every loss value, the discretized δ(ε) upper-bounds the true one, before and after
 * composition. Composition is convolution (FFT, repeated squaring); after each convolution the
 * tails below `tailMass` are truncated the same pessimistic way (low tail merged upwards, high tail
 * to +∞), so the array stays as wide as the distribution rather than T times the one-step support.
 * Each truncation adds at most `tailMass` to δ, and with ~2·log₂T of them that is negligible.
 *
 * Residual numerical caveat: FFT round-off (~1e-16 relative to the largest bin) is not bounded
 * pessimistically; negative round-off is clamped to 0.
 */
import { ConfigError } from '../../core/errors.ts';
import { convolve } from './fft.ts';
import { logAddExp, logSubExp, normalCdf, normalSf } from './special.ts';
import { assertMechanism } from './validate.ts';

export interface PldOptions {
  /** Grid step Δ of the privacy loss (default 1e-4). Smaller is tighter and slower. */
  readonly valueDiscretization?: number;
  /** Mass allowed to be moved (pessimistically) at each tail truncation (default 1e-15). */
  readonly tailMass?: number;
}

const DEFAULT_DISCRETIZATION = 1e-4;
const DEFAULT_TAIL_MASS = 1e-15;

/** A discrete privacy loss distribution: probs[i] is the mass at loss (offset + i)·step. */
export class PrivacyLossDistribution {
  constructor(
    readonly step: number,
    readonly offset: number,
    readonly probs: Float64Array,
    /** Mass at loss +∞ (pays δ in full). */
    readonly infinityMass: number,
    readonly tailMass: number,
  ) {}

  /** Loss value of bin i. */
  lossAt(i: number): number {
    return (this.offset + i) * this.step;
  }

  /** Composition with another PLD on the same grid (the loss of independent mechanisms adds). */
  compose(other: PrivacyLossDistribution): PrivacyLossDistribution {
    if (other.step !== this.step)
      throw new ConfigError([{ path: 'step', message: 'PLDs on different grids' }]);
    const probs = convolve(this.probs, other.probs);
    const infinityMass = this.infinityMass + other.infinityMass - this.infinityMass * other.infinityMass;
    return truncated(this.step, this.offset + other.offset, probs, infinityMass, this.tailMass);
  }

  /** T-fold self composition by repeated squaring. */
  selfCompose(times: number): PrivacyLossDistribution {
    if (!(Number.isSafeInteger(times) && times >= 1))
      throw new ConfigError([{ path: 'steps', message: `must be a positive integer, got ${times}` }]);
    let result: PrivacyLossDistribution | undefined;
    let power: PrivacyLossDistribution = this;
    let remaining = times;
    while (remaining > 0) {
      if (remaining & 1) result = result === undefined ? power : result.compose(power);
      remaining = Math.floor(remaining / 2);
      if (remaining > 0) power = power.compose(power);
    }
    return result as PrivacyLossDistribution;
  }

  /** δ(ε): the hockey-stick divergence E[(1 − e^(ε−L))₊] + P(L = ∞). */
  deltaForEpsilon(epsilon: number): number {
    let delta = 0;
    const first = Math.max(0, Math.floor(epsilon / this.step) - this.offset);
    for (let i = first; i < this.probs.length; i++) {
      const loss = this.lossAt(i);
      if (loss <= epsilon) continue;
      delta += (this.probs[i] as number) * -Math.expm1(epsilon - loss);
    }
    return Math.min(1, delta + this.infinityMass);
  }

  /**
   * Smallest ε ≥ 0 with δ(ε) ≤ δ, exactly: between consecutive grid losses l_(k−1) ≤ ε < l_k,
   * δ(ε) = P(∞) + A_k − e^ε·B_k with suffix sums A_k = Σ_(i≥k) p_i and B_k = Σ_(i≥k) p_i e^(−l_i),
   * so one pass from the top finds the segment where δ(ε) falls to the target and solves for ε.
   */
  epsilonForDelta(delta: number): number {
    if (this.infinityMass > delta) return Number.POSITIVE_INFINITY;
    let sumP = 0;
    let sumPExp = 0;
    for (let k = this.probs.length - 1; k >= 0; k--) {
      const p = this.probs[k] as number;
      const loss = this.lossAt(k);
      sumP += p;
      sumPExp += p * Math.exp(-loss);
      const below = k > 0 ? this.lossAt(k - 1) : Number.NEGATIVE_INFINITY;
      const segmentStart = Math.max(0, below);
      if (loss <= 0) break; // ε ≥ 0 only; reached the segments with ε < 0
      // δ at the segment's left end; δ is decreasing in ε, so the crossing lies in this segment.
      const deltaAtStart = this.infinityMass + sumP - Math.exp(segmentStart) * sumPExp;
      if (deltaAtStart >= delta) {
        const eps = Math.log((this.infinityMass + sumP - delta) / sumPExp);
        return Math.min(loss, Math.max(segmentStart, eps));
      }
    }
    return 0;
  }
}

/** Clamps FFT round-off and trims both tails pessimistically (each up to `tailMass`). */
function truncated(
  step: number,
  offset: number,
  raw: Float64Array,
  infinityMass: number,
  tailMass: number,
): PrivacyLossDistribution {
  for (let i = 0; i < raw.length; i++) if (!((raw[i] as number) > 0)) raw[i] = 0;
  let hi = raw.length - 1;
  let upperTail = 0;
  while (hi > 0 && upperTail + (raw[hi] as number) <= tailMass) upperTail += raw[hi--] as number;
  let lo = 0;
  let lowerTail = 0;
  while (lo < hi && lowerTail + (raw[lo] as number) <= tailMass) lowerTail += raw[lo++] as number;
  const probs = raw.slice(lo, hi + 1);
  // Low tail rounded UP to the first kept bin; high tail to +∞: both only increase δ(ε).
  probs[0] = (probs[0] as number) + lowerTail;
  return new PrivacyLossDistribution(step, offset + lo, probs, infinityMass + upperTail, tailMass);
}

/** Y's law: a mixture of Gaussians N(mean, σ²) with a common σ. */
interface GaussianMixture {
  readonly sigma: number;
  readonly components: ReadonlyArray<{ readonly weight: number; readonly mean: number }>;
}

/**
 * Per component, the standardized point z and the SMALLER tail there (Φ(z) for z < 0, 1 − Φ(z)
 * otherwise): one erfc per grid boundary, and interval masses keep relative accuracy in the tails.
 */
type Tails = Float64Array; // [z₀, tail₀, z₁, tail₁, …]

function tailsAt(law: GaussianMixture, y: number): Tails {
  const out = new Float64Array(2 * law.components.length);
  law.components.forEach((c, i) => {
    const z = (y - c.mean) / law.sigma;
    out[2 * i] = z;
    out[2 * i + 1] = z >= 0 ? normalSf(z) : normalCdf(z);
  });
  return out;
}

/** P(a < Y ≤ b) from the tails at a and b (a ≤ b). */
function massBetween(law: GaussianMixture, ta: Tails, tb: Tails): number {
  let total = 0;
  law.components.forEach((c, i) => {
    const za = ta[2 * i] as number;
    const zb = tb[2 * i] as number;
    const fa = ta[2 * i + 1] as number;
    const fb = tb[2 * i + 1] as number;
    let m: number;
    if (!(zb > za)) m = 0;
    else if (za >= 0)
      m = fa - fb; // both in the upper tail
    else if (zb < 0)
      m = fb - fa; // both in the lower tail
    else m = 1 - fa - fb; // straddles the mean
    total += c.weight * Math.max(0, m);
  });
  return total;
}

/**
 * Discretizes the law of an increasing privacy loss ℓ(y) of a random variable Y:
 * bins k cover losses ((k−1)Δ, kΔ]; Y is truncated to [yLo, yHi]. Mass below yLo joins the lowest
 * bin (its loss is ≤ ℓ(yLo), rounded up); mass above yHi goes to the bin of `supLoss` (the
 * supremum of ℓ) when that is finite, else to +∞.
 */
function discretizeIncreasingLoss(args: {
  step: number;
  tailMass: number;
  loss: (y: number) => number;
  yOfLoss: (l: number) => number;
  law: GaussianMixture;
  yLo: number;
  yHi: number;
  supLoss: number;
}): PrivacyLossDistribution {
  const { step, loss, yOfLoss, law, yLo, yHi, supLoss } = args;
  const kLo = Math.ceil(loss(yLo) / step);
  const kTop = Math.ceil(loss(yHi) / step);
  const kHi = Number.isFinite(supLoss) ? Math.max(kTop, Math.ceil(supLoss / step)) : kTop;
  const probs = new Float64Array(kHi - kLo + 1);
  const atLo = tailsAt(law, yLo);
  const atHi = tailsAt(law, yHi);
  let prevY = yLo;
  let prevTails = atLo;
  for (let k = kLo; k <= kTop; k++) {
    const y = k === kTop ? yHi : Math.min(yHi, Math.max(yLo, yOfLoss(k * step)));
    const tails = y === prevY ? prevTails : y === yHi ? atHi : tailsAt(law, y);
    probs[k - kLo] = massBetween(law, prevTails, tails);
    prevY = y;
    prevTails = tails;
  }
  probs[0] = (probs[0] as number) + massBetween(law, tailsAt(law, Number.NEGATIVE_INFINITY), atLo);
  const upper = massBetween(law, atHi, tailsAt(law, Number.POSITIVE_INFINITY));
  let infinityMass = 0;
  if (Number.isFinite(supLoss)) probs[kHi - kLo] = (probs[kHi - kLo] as number) + upper;
  else infinityMass = upper;
  return new PrivacyLossDistribution(step, kLo, probs, infinityMass, args.tailMass);
}

/** Half-width, in standard deviations, outside which a Gaussian has at most `mass` per side. */
function tailWidth(mass: number): number {
  let t = 1;
  while (normalSf(t) > mass) t += 0.25;
  return t;
}

export type PldDirection = 'remove' | 'add';

/** One step of the Poisson-subsampled Gaussian mechanism (sensitivity 1), in one direction. */
export function subsampledGaussianPld(
  samplingRate: number,
  noiseMultiplier: number,
  direction: PldDirection,
  options: PldOptions = {},
): PrivacyLossDistribution {
  assertMechanism({ samplingRate, noiseMultiplier });
  const step = options.valueDiscretization ?? DEFAULT_DISCRETIZATION;
  const tailMass = options.tailMass ?? DEFAULT_TAIL_MASS;
  const optionIssues = [];
  if (!(step > 0 && step <= 1))
    optionIssues.push({ path: 'valueDiscretization', message: `must be in (0, 1], got ${step}` });
  if (!(tailMass > 0 && tailMass < 1e-3))
    optionIssues.push({ path: 'tailMass', message: `must be in (0, 1e-3), got ${tailMass}` });
  if (optionIssues.length > 0) throw new ConfigError(optionIssues, 'PLD options');

  const q = samplingRate;
  const sigma = noiseMultiplier;
  const s2 = sigma * sigma;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q); // −∞ when q = 1
  const t = tailWidth(tailMass / 2);
  // log(1 − q + q·e^u), the log-likelihood ratio as a function of u = (2x − 1)/(2σ²).
  const logMix = (u: number): number => logAddExp(log1mQ, logQ + u);
  // u with logMix(u) = l, or −∞ where l ≤ log(1 − q) (below the loss range).
  const uOfLogMix = (l: number): number =>
    l <= log1mQ ? Number.NEGATIVE_INFINITY : logSubExp(l, log1mQ) - logQ;

  if (direction === 'remove') {
    // Y = X ~ P, loss ℓ(y) = logMix((2y − 1)/(2σ²)), increasing, unbounded above.
    return discretizeIncreasingLoss({
      step,
      tailMass,
      loss: (y) => logMix((2 * y - 1) / (2 * s2)),
      yOfLoss: (l) => s2 * uOfLogMix(l) + 0.5,
      law: {
        sigma,
        components:
          q < 1
            ? [
                { weight: 1 - q, mean: 0 },
                { weight: q, mean: 1 },
              ]
            : [{ weight: 1, mean: 1 }],
      },
      yLo: -t * sigma,
      yHi: 1 + t * sigma,
      supLoss: Number.POSITIVE_INFINITY,
    });
  }
  // Y = −X with X ~ Q (so Y ~ N(0, σ²) too); loss −logMix((−2y − 1)/(2σ²)), increasing in y and
  // bounded above by −log(1 − q).
  return discretizeIncreasingLoss({
    step,
    tailMass,
    loss: (y) => -logMix((-2 * y - 1) / (2 * s2)),
    yOfLoss: (l) => {
      const u = uOfLogMix(-l);
      return u === Number.NEGATIVE_INFINITY ? Number.POSITIVE_INFINITY : -(s2 * u) - 0.5;
    },
    law: { sigma, components: [{ weight: 1, mean: 0 }] },
    yLo: -t * sigma,
    yHi: t * sigma,
    supLoss: -log1mQ,
  });
}

export interface PldAccountingInput extends PldOptions {
  readonly noiseMultiplier: number;
  readonly samplingRate: number;
  readonly steps: number;
}

function composedBothWays(input: PldAccountingInput): PrivacyLossDistribution[] {
  const { noiseMultiplier, samplingRate, steps } = input;
  assertMechanism({ noiseMultiplier, samplingRate, steps });
  // For q = 1 both directions have the same loss law N(1/(2σ²), 1/σ²): compute it once.
  const directions: PldDirection[] = samplingRate === 1 ? ['remove'] : ['remove', 'add'];
  return directions.map((d) =>
    subsampledGaussianPld(samplingRate, noiseMultiplier, d, input).selfCompose(steps),
  );
}

/** ε at the given δ after `steps` steps (worse of both directions). */
export function pldEpsilon(input: PldAccountingInput & { readonly delta: number }): number {
  assertMechanism({ delta: input.delta });
  return Math.max(...composedBothWays(input).map((p) => p.epsilonForDelta(input.delta)));
}

/** δ at the given ε after `steps` steps (worse of both directions). */
export function pldDelta(input: PldAccountingInput & { readonly epsilon: number }): number {
  if (!(input.epsilon >= 0 && Number.isFinite(input.epsilon)))
    throw new ConfigError([
      { path: 'epsilon', message: `must be a finite number ≥ 0, got ${input.epsilon}` },
    ]);
  return Math.max(...composedBothWays(input).map((p) => p.deltaForEpsilon(input.epsilon)));
}
