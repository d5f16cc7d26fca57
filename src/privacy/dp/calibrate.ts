/**
 * Planning a deployment: the ε a noise multiplier buys, and the smallest noise multiplier that
 * meets a target (ε, δ) over a planned number of steps of the Poisson-subsampled Gaussian mechanism.
 */
import { ConfigError } from '../../core/errors.ts';
import { pldEpsilon } from './pld.ts';
import { rdpEpsilon } from './rdp.ts';
import { assertMechanism } from './validate.ts';

export type AccountantKind = 'rdp' | 'pld';
export const ACCOUNTANTS: readonly AccountantKind[] = ['rdp', 'pld'];

interface AccountantChoice {
  /** Default 'rdp'. 'pld' is tighter (smaller ε, smaller σ) and slower. */
  readonly accountant?: AccountantKind;
  /** PLD grid step (default 1e-4); ignored by RDP. */
  readonly valueDiscretization?: number;
}

export interface EpsilonForInput extends AccountantChoice {
  readonly noiseMultiplier: number;
  readonly samplingRate: number;
  readonly steps: number;
  readonly delta: number;
}

export interface NoiseMultiplierForInput extends AccountantChoice {
  readonly epsilon: number;
  readonly delta: number;
  readonly samplingRate: number;
  readonly steps: number;
  /** Relative width of the final bisection bracket (default 1e-6 for RDP, 1e-3 for PLD). */
  readonly relativeTolerance?: number;
}

function assertAccountant(accountant: unknown): asserts accountant is AccountantKind {
  if (!ACCOUNTANTS.includes(accountant as AccountantKind))
    throw new ConfigError(
      [
        {
          path: 'accountant',
          message: `must be one of ${ACCOUNTANTS.join(', ')}, got '${String(accountant)}'`,
        },
      ],
      'privacy parameters',
    );
}

/** (ε, δ) spent by `steps` steps with the given noise multiplier. */
export function epsilonFor(input: EpsilonForInput): number {
  const accountant = input.accountant ?? 'rdp';
  assertAccountant(accountant);
  const { noiseMultiplier, samplingRate, steps, delta } = input;
  assertMechanism({ noiseMultiplier, samplingRate, steps, delta });
  if (accountant === 'rdp') return rdpEpsilon({ noiseMultiplier, samplingRate, steps, delta }).epsilon;
  return pldEpsilon({
    noiseMultiplier,
    samplingRate,
    steps,
    delta,
    ...(input.valueDiscretization !== undefined ? { valueDiscretization: input.valueDiscretization } : {}),
  });
}

/** Largest noise multiplier tried before a target is declared unreachable. */
const MAX_NOISE_MULTIPLIER = 2 ** 16;
/** Smallest noise multiplier tried; targets met below it return it. */
const MIN_NOISE_MULTIPLIER = 2 ** -10;

/**
 * The smallest noise multiplier σ (up to the tolerance, rounded UP so the result always meets the
 * target) with ε(σ) ≤ target. ε(σ) is non-increasing in σ for both accountants, so bisection on a
 * bracket [lo, hi] with ε(lo) > target ≥ ε(hi) converges. For PLD the RDP answer is a valid upper
 * end of the bracket (PLD is tighter), which saves the expensive doubling phase.
 */
export function noiseMultiplierFor(input: NoiseMultiplierForInput): number {
  const accountant = input.accountant ?? 'rdp';
  assertAccountant(accountant);
  const { epsilon, delta, samplingRate, steps } = input;
  assertMechanism({ epsilon, delta, samplingRate, steps });
  const tolerance = input.relativeTolerance ?? (accountant === 'rdp' ? 1e-6 : 1e-3);
  if (!(tolerance > 0 && tolerance < 1))
    throw new ConfigError([{ path: 'relativeTolerance', message: `must be in (0, 1), got ${tolerance}` }]);
  const epsAt = (noiseMultiplier: number): number =>
    epsilonFor({ ...input, accountant, noiseMultiplier, samplingRate, steps, delta });

  let hi = 1;
  if (accountant === 'pld') {
    try {
      hi = noiseMultiplierFor({ ...input, accountant: 'rdp', relativeTolerance: 1e-3 });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e; // unreachable for RDP may still be reachable for PLD
    }
  }
  let epsHi = epsAt(hi);
  while (epsHi > epsilon) {
    if (hi >= MAX_NOISE_MULTIPLIER)
      throw new ConfigError(
        [
          {
            path: 'epsilon',
            message:
              `ε = ${epsilon} at δ = ${delta} is unreachable with the ${accountant} accountant for ` +
              `q = ${samplingRate}, ${steps} steps: even σ = ${hi} gives ε = ${epsHi}`,
          },
        ],
        'privacy target',
      );
    hi *= 2;
    epsHi = epsAt(hi);
  }
  // PLD's σ is usually within 20% of RDP's, and PLD evaluations get costly as σ shrinks: step
  // down gently there.
  const shrink = accountant === 'pld' ? 0.8 : 0.5;
  let lo = hi * shrink;
  let epsLo = epsAt(lo);
  while (epsLo <= epsilon) {
    hi = lo;
    epsHi = epsLo;
    if (lo <= MIN_NOISE_MULTIPLIER) return lo;
    lo *= shrink;
    epsLo = epsAt(lo);
  }
  // Invariant: ε(lo) > target ≥ ε(hi). Illinois (regula falsi that halves the residual of an end
  // kept twice in a row) needs far fewer evaluations than bisection on this smooth curve, which
  // matters for PLD. Trial points stay a quarter-tolerance inside the bracket so it always shrinks.
  let fLo = epsLo - epsilon;
  let fHi = epsHi - epsilon;
  let kept: 'lo' | 'hi' | undefined;
  for (let it = 0; it < 200 && (hi - lo) / hi > tolerance; it++) {
    const margin = 0.25 * tolerance * hi;
    let mid = hi - (fHi * (hi - lo)) / (fHi - fLo);
    if (!Number.isFinite(mid)) mid = 0.5 * (lo + hi);
    mid = Math.min(hi - margin, Math.max(lo + margin, mid));
    const fMid = epsAt(mid) - epsilon;
    if (fMid <= 0) {
      hi = mid;
      fHi = fMid;
      if (kept === 'lo') fLo /= 2;
      kept = 'lo';
    } else {
      lo = mid;
      fLo = fMid;
      if (kept === 'hi') fHi /= 2;
      kept = 'hi';
    }
  }
  return hi;
}
