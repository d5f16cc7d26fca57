/**
 * Periodic re-tuning baselines: grid search and random search over (λ, γ) scored by rolling-origin
 * (time-series) cross-validation on the current window. Folds: the window's n pairs are cut into F+1
 * blocks of v = ⌊n/(F+1)⌋; fold f trains on blocks 1..f (minus the last h−1 pairs, whose targets lie
 * after the validation origin) and validates on block f+1. Each candidate and fold is a fresh Cholesky
 * solve, the usual practice; kernel values for one γ are computed once and shared by all λ and folds.
 */
import type { Rng } from '../../core/rng.ts';
import { kernelFromStat, TRANSFORM_FLOPS } from './kernels.ts';
import { choleskyFlops, choleskyInPlace, choleskySolve } from './meter.ts';
import type { KrrWindow } from './window.ts';

export interface Candidate {
  readonly lambda: number;
  readonly gamma: number;
}

export function logGrid(low: number, high: number, count: number): number[] {
  if (count === 1) return [Math.sqrt(low * high)];
  return Array.from({ length: count }, (_, i) =>
    Math.exp(Math.log(low) + ((Math.log(high) - Math.log(low)) * i) / (count - 1)),
  );
}

export function gridCandidates(
  lambdaBounds: readonly [number, number],
  gammaBounds: readonly [number, number],
  lambdas: number,
  gammas: number,
): Candidate[] {
  const out: Candidate[] = [];
  for (const gamma of logGrid(gammaBounds[0], gammaBounds[1], gammas)) {
    for (const lambda of logGrid(lambdaBounds[0], lambdaBounds[1], lambdas)) out.push({ lambda, gamma });
  }
  return out;
}

export function randomCandidates(
  lambdaBounds: readonly [number, number],
  gammaBounds: readonly [number, number],
  count: number,
  rng: Rng,
): Candidate[] {
  const draw = (b: readonly [number, number]) => Math.exp(rng.uniform(Math.log(b[0]), Math.log(b[1])));
  return Array.from({ length: count }, () => ({ lambda: draw(lambdaBounds), gamma: draw(gammaBounds) }));
}

export interface Fold {
  readonly trainEnd: number;
  readonly validStart: number;
  readonly validEnd: number;
}

export function rollingFolds(n: number, folds: number, horizon: number): Fold[] {
  const v = Math.floor(n / (folds + 1));
  const out: Fold[] = [];
  for (let f = 1; f <= folds; f++) {
    const trainEnd = f * v - (horizon - 1);
    if (trainEnd < 2) continue;
    out.push({ trainEnd, validStart: f * v, validEnd: f === folds ? n : (f + 1) * v });
  }
  return out;
}

export interface CvScore extends Candidate {
  readonly mse: number;
}

/** Rolling-origin CV mean squared error of each candidate on the window's pairs; all work is metered. */
export function crossValidate(
  window: KrrWindow,
  candidates: readonly Candidate[],
  horizon: number,
  folds: number,
): CvScore[] {
  const n = window.size;
  const meter = window.meter;
  const y = window.targets();
  const foldList = rollingFolds(n, folds, horizon);
  const kByGamma = new Map<number, Float64Array>();
  const kernelFor = (gamma: number): Float64Array => {
    const cached = kByGamma.get(gamma);
    if (cached) return cached;
    const k = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = kernelFromStat(window.kernel, window.statAt(i, j), gamma);
        k[i * n + j] = v;
        k[j * n + i] = v;
      }
    }
    const transforms = (n * (n + 1)) / 2;
    meter.kernelTransforms += transforms;
    meter.add(transforms * TRANSFORM_FLOPS);
    kByGamma.set(gamma, k);
    return k;
  };
  const a = new Float64Array(n * n);
  const l = new Float64Array(n * n);
  const rhs = new Float64Array(n);
  return candidates.map((cand) => {
    const k = kernelFor(cand.gamma);
    let sse = 0;
    let count = 0;
    for (const fold of foldList) {
      const m = fold.trainEnd;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < m; j++) a[i * m + j] = k[i * n + j] as number;
        a[i * m + i] = (a[i * m + i] as number) + cand.lambda;
        rhs[i] = y[i] as number;
      }
      meter.add(choleskyFlops(m) + 2 * m * m);
      if (!choleskyInPlace(a, l, m, m)) {
        sse = Number.POSITIVE_INFINITY;
        break;
      }
      choleskySolve(l, m, m, rhs);
      for (let r = fold.validStart; r < fold.validEnd; r++) {
        let pred = 0;
        for (let i = 0; i < m; i++) pred += (k[r * n + i] as number) * (rhs[i] as number);
        sse += (pred - (y[r] as number)) ** 2;
        count++;
      }
      meter.add((fold.validEnd - fold.validStart) * (2 * m + 3));
    }
    return { ...cand, mse: count > 0 ? sse / count : Number.POSITIVE_INFINITY };
  });
}

/** Best candidate by CV error (ties: the first), applied to the window (one refresh). */
export function retune(
  window: KrrWindow,
  candidates: readonly Candidate[],
  horizon: number,
  folds: number,
): CvScore {
  const scores = crossValidate(window, candidates, horizon, folds);
  let best = scores[0] as CvScore;
  for (const s of scores) if (s.mse < best.mse) best = s;
  if (Number.isFinite(best.mse)) window.setHyper(best.lambda, best.gamma);
  return best;
}
