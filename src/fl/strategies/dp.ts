/**
 * User-level differential privacy for server steps (DP-FedAvg, McMahan et al. 2018 "Learning
 * Differentially Private Recurrent Language Models"; DP-FedBuff follows the same recipe per buffer).
 *
 * Per step:
 * 1. Every accepted update Δᵢ is clipped to L2 norm C (fails closed: a non-finite update or norm is
 *    rejected as 'non_finite' and nothing is added).
 * 2. It is added to a sum with weight wᵢ ≤ 1: 1 for sync rounds, the staleness weight for FedBuff.
 *    NOT the example count: the guarantee is per user, so one user's contribution to the sum must be
 *    bounded by C whatever its data size, which caps every weight at 1.
 * 3. The server adds N(0, (σ·C)²) per coordinate to the SUM (sensitivity C) and divides by the FIXED
 *    target count K (buffer size or cohort size). A data-dependent denominator (the number of updates
 *    that actually arrived, or Σ wᵢ) would be a function of who took part, released without noise,
 *    and would change the sensitivity; the fixed-size sum of the DP-FedAvg paper avoids both.
 * 4. The step is recorded in the accountant with sampling rate q = K / population.
 *
 * Honest caveat on accounting: the accountants analyse Poisson subsampling, each user present with
 * probability q independently. Neither a sync cohort of exactly K nor FedBuff's buffer (the first K
 * updates to arrive, from clients the driver picked uniformly) is Poisson sampling; like most
 * papers on DP-FedAvg / DP-FedBuff we treat each step as sampling K of N users and report the
 * Poisson figure for q = K/N. It is an approximation, not a proof for the exact sampling scheme.
 *
 * Noise comes from the cryptographic source in addGaussianNoise (snapped to a grid against
 * floating-point attacks), never from the experiment Rng: everything else in a run stays seeded and
 * reproducible, the noise deliberately does not.
 */
import { ConfigError, type Issue, NonFiniteError, OrchardError } from '../../core/errors.ts';
import { AdaptiveClipper, updateNoiseMultiplier } from '../../privacy/dp/adaptive-clip.ts';
import { noiseMultiplierFor } from '../../privacy/dp/calibrate.ts';
import { finiteL2Norm } from '../../privacy/dp/clip.ts';
import { addGaussianNoise, type RandomSource } from '../../privacy/dp/noise.ts';
import { pldEpsilon } from '../../privacy/dp/pld.ts';
import { RdpAccountant } from '../../privacy/dp/rdp.ts';
import { accumulate, allocAccumulator } from '../aggregate.ts';
import type { PrivacySpec } from '../spec.ts';
import type { Strategy, StrategySnapshot } from '../types.ts';
import { type Rejection, reject } from './common.ts';

export interface PrivacySpent {
  readonly epsilon: number;
  readonly delta: number;
  /** Noised server steps released so far. */
  readonly steps: number;
}

export interface PrivacyReport extends PrivacySpent {
  /** σ the accountant uses (for adaptive clipping: the combined multiplier of update and count). */
  readonly noiseMultiplier: number;
  /** Current clip norm (the adaptive one moves). */
  readonly clipNorm: number;
  readonly accountant: 'rdp' | 'pld';
}

/** What a strategy with DP exposes to drivers. */
export interface PrivateStrategy {
  privacySpent(): PrivacySpent;
  /** True when one more server step would push ε past the configured budget (false without one). */
  wouldExceedBudget(): boolean;
  privacyReport(): PrivacyReport;
}

/** True when `strategy` was built with a privacy block. */
export function isPrivate(strategy: Strategy): strategy is Strategy & PrivateStrategy {
  const s = strategy as Partial<PrivateStrategy>;
  return typeof s.privacySpent === 'function' && typeof s.wouldExceedBudget === 'function';
}

/** A privacy spec with everything fixed for the run. */
export interface ResolvedPrivacy {
  readonly clip:
    | { readonly kind: 'fixed'; readonly norm: number }
    | {
        readonly kind: 'adaptive';
        readonly initialNorm: number;
        readonly targetQuantile: number;
        readonly learningRate: number;
        readonly countNoiseStddev: number;
      };
  /** σ for the accountant. */
  readonly noiseMultiplier: number;
  /** σ actually applied to the update sum (smaller than noiseMultiplier under adaptive clipping). */
  readonly updateNoiseMultiplier: number;
  readonly delta: number;
  readonly samplingRate: number;
  readonly accountant: 'rdp' | 'pld';
  readonly budgetEpsilon?: number;
  /** K: the fixed denominator and the most updates one step sums. */
  readonly updatesPerStep: number;
}

/**
 * Validates a privacy spec for a strategy that sums `updatesPerStep` updates per step, and
 * calibrates σ when a target ε is given. Issues are reported under `privacy.*`.
 */
export function resolvePrivacy(spec: PrivacySpec, updatesPerStep: number): ResolvedPrivacy {
  const issues: Issue[] = [];
  const at = (path: string, message: string): void => {
    issues.push({ path: `privacy.${path}`, message });
  };
  if ((spec.clipNorm === undefined) === (spec.adaptive === undefined))
    at('clipNorm', 'set exactly one of clipNorm or adaptive');
  if (spec.clipNorm !== undefined && !(Number.isFinite(spec.clipNorm) && spec.clipNorm > 0))
    at('clipNorm', `must be a finite number > 0, got ${spec.clipNorm}`);
  if ((spec.noiseMultiplier === undefined) === (spec.targetEpsilon === undefined))
    at('noiseMultiplier', 'set exactly one of noiseMultiplier or targetEpsilon');
  if (
    spec.noiseMultiplier !== undefined &&
    !(Number.isFinite(spec.noiseMultiplier) && spec.noiseMultiplier >= 0)
  )
    at('noiseMultiplier', `must be a finite number ≥ 0, got ${spec.noiseMultiplier}`);
  if (spec.targetEpsilon !== undefined && spec.plannedSteps === undefined)
    at('plannedSteps', 'required with targetEpsilon');
  if (!(spec.delta > 0 && spec.delta < 1)) at('delta', `must be in (0, 1), got ${spec.delta}`);
  if (spec.population === undefined)
    at('population', 'required (the experiment runner fills in the dataset client count)');
  else if (!(Number.isInteger(spec.population) && spec.population >= updatesPerStep))
    at('population', `must be an integer ≥ the ${updatesPerStep} updates per step, got ${spec.population}`);
  if (spec.budget !== undefined && !(spec.budget.epsilon > 0))
    at('budget.epsilon', `must be > 0, got ${spec.budget.epsilon}`);
  if (issues.length > 0) throw new ConfigError(issues, 'privacy config');
  const samplingRate = updatesPerStep / (spec.population as number);
  let noiseMultiplier = spec.noiseMultiplier ?? 0;
  if (spec.targetEpsilon !== undefined) {
    try {
      noiseMultiplier = noiseMultiplierFor({
        epsilon: spec.targetEpsilon,
        delta: spec.delta,
        samplingRate,
        steps: spec.plannedSteps as number,
        accountant: spec.accountant,
      });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      throw new ConfigError(
        e.issues.map((i) => ({ path: `privacy.targetEpsilon`, message: i.message })),
        'privacy config',
      );
    }
  }
  let applied = noiseMultiplier;
  let clip: ResolvedPrivacy['clip'];
  if (spec.adaptive !== undefined) {
    const a = spec.adaptive;
    if (noiseMultiplier > 0) {
      try {
        applied = updateNoiseMultiplier(noiseMultiplier, a.countNoiseMultiplier);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        throw new ConfigError(
          [{ path: 'privacy.adaptive.countNoiseMultiplier', message: e.issues[0]?.message ?? e.message }],
          'privacy config',
        );
      }
    }
    clip = {
      kind: 'adaptive',
      initialNorm: a.initialClipNorm,
      targetQuantile: a.targetQuantile,
      learningRate: a.learningRate,
      countNoiseStddev: a.countNoiseMultiplier,
    };
  } else clip = { kind: 'fixed', norm: spec.clipNorm as number };
  return {
    clip,
    noiseMultiplier,
    updateNoiseMultiplier: applied,
    delta: spec.delta,
    samplingRate,
    accountant: spec.accountant,
    updatesPerStep,
    ...(spec.budget !== undefined ? { budgetEpsilon: spec.budget.epsilon } : {}),
  };
}

/** Float32 accumulation of K values each ≤ C may round a hair above K·C; the noise bound allows it. */
const BOUND_SLACK = 1 + 1e-4;

/**
 * Clipped, weighted sum of one step's updates, noised and divided by K at release, plus the
 * privacy ledger. Used by SyncRounds and FedBuff when a privacy block is configured.
 */
export class DpAggregator implements PrivateStrategy {
  private readonly sum: Float32Array;
  private count = 0;
  private readonly norms: number[] = [];
  private readonly clipper: AdaptiveClipper | undefined;
  private rdp = new RdpAccountant();
  private released = 0;
  /** PLD ε by step count (q and σ are fixed in a run, so ε depends on the count alone). */
  private readonly pldCache = new Map<number, number>();
  private lookAheadFor = -1;
  private pldMaxSteps: number | undefined;
  private lookAheadExceeds = false;

  constructor(
    readonly config: ResolvedPrivacy,
    numParams: number,
    private readonly source?: RandomSource,
  ) {
    this.sum = allocAccumulator(numParams);
    this.clipper =
      config.clip.kind === 'adaptive'
        ? new AdaptiveClipper({
            initialNorm: config.clip.initialNorm,
            targetQuantile: config.clip.targetQuantile,
            learningRate: config.clip.learningRate,
            countNoiseStddev: config.clip.countNoiseStddev,
            ...(source !== undefined ? { source } : {}),
          })
        : undefined;
  }

  get clipNorm(): number {
    return this.clipper !== undefined
      ? this.clipper.norm
      : (this.config.clip as { readonly norm: number }).norm;
  }
  /** Updates summed in the current step. */
  get pending(): number {
    return this.count;
  }

  /**
   * Clips `delta` to the current norm and adds it with `weight` (capped at 1). Returns the scale
   * applied, or a 'non_finite' rejection (nothing added).
   */
  add(delta: Float32Array, weight: number): { readonly scale: number } | Rejection {
    if (this.count >= this.config.updatesPerStep)
      throw new OrchardError('INVALID_STATE', `step already holds ${this.count} updates`);
    let norm: number;
    try {
      norm = finiteL2Norm(delta);
    } catch (e) {
      if (e instanceof NonFiniteError) return reject('non_finite', e.message);
      throw e;
    }
    const c = this.clipNorm;
    const scale = norm > c ? c / norm : 1;
    // Clipping folded into the accumulation weight: one pass, no clipped copy.
    accumulate(this.sum, Math.min(1, weight) * scale, delta);
    this.norms.push(norm);
    this.count++;
    return { scale };
  }

  /**
   * Releases the step: sum + N(0, (σC)²), divided by K. Returns the pseudo-gradient (a new array)
   * and resets the sum. Refuses (INVALID_STATE) a step the budget does not allow: drivers must stop
   * when wouldExceedBudget() says so.
   */
  release(): Float32Array {
    if (this.wouldExceedBudget())
      throw new OrchardError(
        'INVALID_STATE',
        `one more step would exceed the privacy budget ε = ${this.config.budgetEpsilon}`,
      );
    const k = this.config.updatesPerStep;
    const c = this.clipNorm;
    const stddev = this.config.updateNoiseMultiplier * c;
    let noised: Float32Array;
    if (stddev > 0)
      // The 1/K of the mean is applied by the noise routine after snapping (post-processing).
      noised = addGaussianNoise(this.sum, {
        stddev,
        bound: k * c * BOUND_SLACK,
        scale: 1 / k,
        ...(this.source !== undefined ? { source: this.source } : {}),
      });
    else {
      noised = new Float32Array(this.sum);
      for (let i = 0; i < noised.length; i++) noised[i] = (noised[i] as number) / k;
    }
    this.clipper?.update(this.norms, k);
    this.recordStep();
    this.discard();
    return noised;
  }

  /** The ledger and the current step (for checkpoints): see StrategySnapshot.privacy. */
  exportState(): {
    readonly state: NonNullable<StrategySnapshot['privacy']>;
    readonly sum: Float32Array;
  } {
    return {
      state: { steps: this.released, clipNorm: this.clipNorm, norms: [...this.norms] },
      sum: new Float32Array(this.sum),
    };
  }

  /** Resumes from exportState's output (a checkpoint of an aggregator with the same config). */
  importState(state: NonNullable<StrategySnapshot['privacy']>, sum: Float32Array): void {
    const { steps, clipNorm, norms } = state;
    const bad = (message: string) => new OrchardError('INVALID_ARGUMENT', `DP snapshot: ${message}`);
    if (!(Number.isInteger(steps) && steps >= 0)) throw bad(`steps must be an integer ≥ 0, got ${steps}`);
    if (sum.length !== this.sum.length)
      throw bad(`sum has ${sum.length} values, the model ${this.sum.length}`);
    if (!(norms.length < this.config.updatesPerStep && norms.every((n) => Number.isFinite(n) && n >= 0)))
      throw bad(`a step holds fewer than ${this.config.updatesPerStep} finite norms`);
    if (
      this.clipper === undefined ? clipNorm !== this.clipNorm : !(Number.isFinite(clipNorm) && clipNorm > 0)
    )
      throw bad(`clip norm ${clipNorm} does not belong to this configuration`);
    this.clipper?.restore(clipNorm);
    this.discard();
    this.sum.set(sum);
    this.norms.push(...norms);
    this.count = norms.length;
    this.rdp = new RdpAccountant();
    if (steps > 0 && this.config.noiseMultiplier > 0)
      this.rdp.record(this.config.samplingRate, this.config.noiseMultiplier, steps);
    this.released = steps;
    this.lookAheadFor = -1;
  }

  /** Drops the current step's updates without releasing anything (a discarded sync round). */
  discard(): void {
    this.sum.fill(0);
    this.count = 0;
    this.norms.length = 0;
  }

  private recordStep(): void {
    if (this.config.noiseMultiplier > 0)
      this.rdp.record(this.config.samplingRate, this.config.noiseMultiplier);
    this.released++;
  }

  private epsilonAt(steps: number): number {
    if (steps === 0) return 0;
    const { noiseMultiplier, samplingRate, delta } = this.config;
    if (noiseMultiplier === 0) return Number.POSITIVE_INFINITY;
    if (this.config.accountant === 'rdp') {
      if (steps === this.released) return this.rdp.epsilon(delta).epsilon;
      return this.rdp.epsilonAfter(delta, samplingRate, noiseMultiplier, steps - this.released);
    }
    let eps = this.pldCache.get(steps);
    if (eps === undefined) {
      eps = pldEpsilon({ noiseMultiplier, samplingRate, steps, delta });
      this.pldCache.set(steps, eps);
    }
    return eps;
  }

  privacySpent(): PrivacySpent {
    return { epsilon: this.epsilonAt(this.released), delta: this.config.delta, steps: this.released };
  }

  wouldExceedBudget(): boolean {
    const budget = this.config.budgetEpsilon;
    if (budget === undefined) return false;
    if (this.config.accountant === 'pld') return this.released + 1 > this.pldAllowedSteps(budget);
    // Drivers ask before every event; the answer only changes when a step is released.
    if (this.lookAheadFor !== this.released) {
      this.lookAheadFor = this.released;
      this.lookAheadExceeds = this.epsilonAt(this.released + 1) > budget;
    }
    return this.lookAheadExceeds;
  }

  /**
   * PLD: the most steps whose ε stays within the budget, found once (ε grows with the step count;
   * doubling then bisection costs O(log T) PLD compositions instead of one per step).
   */
  private pldAllowedSteps(budget: number): number {
    if (this.pldMaxSteps !== undefined) return this.pldMaxSteps;
    let allowed = 0;
    if (this.config.noiseMultiplier > 0 && this.epsilonAt(1) <= budget) {
      let lo = 1; // ε(lo) ≤ budget
      let hi = 2;
      while (this.epsilonAt(hi) <= budget) {
        lo = hi;
        hi *= 2;
        if (hi > 1e9) throw new OrchardError('INVALID_STATE', 'privacy budget allows over 1e9 steps');
      }
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if (this.epsilonAt(mid) <= budget) lo = mid;
        else hi = mid;
      }
      allowed = lo;
    }
    this.pldMaxSteps = allowed;
    return allowed;
  }

  privacyReport(): PrivacyReport {
    return {
      ...this.privacySpent(),
      noiseMultiplier: this.config.noiseMultiplier,
      clipNorm: this.clipNorm,
      accountant: this.config.accountant,
    };
  }
}
