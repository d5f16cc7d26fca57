/**
 * Reproduction of the latent-effect logit claims on simulated panels with known truth: for several
 * (n, T, r), the convex model and the three baselines are fitted on a training panel and scored on an
 * independent test panel of the same individuals: coefficient recovery ‖B̂ − B‖_F / ‖B‖_F, held-out
 * log-likelihood per situation, run time, and stability of the answer across random restarts.
 */
import { Rng } from '../../core/rng.ts';
import {
  fitMixedLogit,
  fitPerIndividualLogit,
  fitPooledLogit,
  type MixedLogitFit,
  mixedLogitHeldOutLogLik,
} from './baselines.ts';
import { type CompiledPanel, compilePanel, splitHoldout } from './data.ts';
import { meanLogLik, relativeError } from './model.ts';
import { simulatePanel } from './simulate.ts';
import { fitLatentLogit, fitLatentLogitPath, geometricGrid, type PathPoint, truncateFit } from './solver.ts';

export interface ReproSetting {
  readonly kind: 'binary' | 'choice';
  readonly n: number;
  readonly T: number;
  readonly d: number;
  readonly r: number;
}

export type MethodName = 'convex' | 'convex-rank' | 'pooled' | 'per-individual' | 'mixed';

export interface MethodResult {
  readonly method: MethodName;
  /** ‖B̂ − B_true‖_F / ‖B_true‖_F over all individuals' coefficients. */
  readonly recoveryError: number;
  /** Mean log-likelihood per situation on the independent test panel. */
  readonly heldOutLogLik: number;
  /** Wall time of the whole fitting procedure, tuning included (see notes in the report). */
  readonly seconds: number;
  /** max over restarts of ‖B̂_restart − B̂‖_F / ‖B̂‖_F: 0 means the same answer every time. */
  readonly instability: number;
  /** Method-specific facts (selected λ, rank, ridge, restart likelihoods…). */
  readonly details: Readonly<Record<string, number | string>>;
}

export interface SettingResult {
  readonly setting: ReproSetting;
  /** Held-out log-likelihood of the true coefficients: the ceiling for every method. */
  readonly oracleHeldOutLogLik: number;
  readonly methods: readonly MethodResult[];
  /** The convex model's λ path on the training split (held-out NLL per grid point). */
  readonly convexPath: readonly PathPoint[];
}

export interface LogitReproResult {
  readonly quick: boolean;
  readonly seed: number;
  readonly restarts: number;
  readonly settings: readonly SettingResult[];
  readonly seconds: number;
}

export interface LogitReproOptions {
  readonly quick?: boolean;
  readonly seed?: number;
  /** Random restarts used to measure stability (default 3). */
  readonly restarts?: number;
  /** Override the settings (default: a grid chosen by `quick`). */
  readonly settings?: readonly ReproSetting[];
  readonly log?: (message: string) => void;
}

export const FULL_SETTINGS: readonly ReproSetting[] = [
  { kind: 'binary', n: 50, T: 20, d: 10, r: 2 },
  { kind: 'binary', n: 50, T: 60, d: 10, r: 2 },
  { kind: 'binary', n: 100, T: 40, d: 10, r: 3 },
  { kind: 'binary', n: 100, T: 100, d: 10, r: 3 },
  { kind: 'choice', n: 60, T: 30, d: 8, r: 2 },
];

export const QUICK_SETTINGS: readonly ReproSetting[] = [
  { kind: 'binary', n: 20, T: 20, d: 6, r: 2 },
  { kind: 'binary', n: 20, T: 60, d: 6, r: 2 },
];

function maxSpread(fits: readonly Float64Array[], reference: Float64Array): number {
  let refNorm = 0;
  for (const v of reference) refNorm += v * v;
  let worst = 0;
  for (const f of fits) {
    // A zero reference (e.g. a rank-0 truncation of w = 0) makes the relative spread 0/0: use the absolute one.
    if (refNorm === 0) worst = Math.max(worst, Math.sqrt(f.reduce((a, v) => a + v * v, 0)));
    else worst = Math.max(worst, relativeError(f, reference));
  }
  return worst;
}

function randomInit(rng: Rng, length: number): number[] {
  return Array.from({ length }, () => rng.normal());
}

function runSetting(
  setting: ReproSetting,
  seed: number,
  quick: boolean,
  restarts: number,
  log: (m: string) => void,
): SettingResult {
  const config = { ...setting, seed, alternatives: 3 };
  const sim = simulatePanel(config, 0);
  const train = compilePanel(sim.panel);
  const test = compilePanel(simulatePanel(config, 1).panel);
  const truth = sim.truth.B;
  const { n, d } = train;
  const rng = Rng.derive(seed, 99);
  const methods: MethodResult[] = [];
  const label = `${setting.kind} n=${setting.n} T=${setting.T} r=${setting.r}`;

  // Convex latent-effect logit: λ path with held-out selection, then restarts at the chosen λ.
  log(`[${label}] convex λ path`);
  let started = performance.now();
  const path = fitLatentLogitPath(train, {
    lambda1Ratios: geometricGrid(quick ? 3 : 6, quick ? 0.01 : 0.001),
    lambda2Ratios: geometricGrid(quick ? 4 : 6, quick ? 0.05 : 0.02),
    seed,
    // The final refit and the restarts use a tight certificate so that their spread measures the
    // problem's (non)uniqueness, not the stopping tolerance.
    solver: { tol: 1e-9, optTol: 1e-5 },
  });
  const tight = { tol: 1e-12, optTol: 1e-7, maxIter: 5000 };
  const convexFit = fitLatentLogit(train, {
    ...tight,
    lambda1: path.fit.lambda1,
    lambda2: path.fit.lambda2,
    init: { w: path.fit.w, U: path.fit.U },
  });
  const convexSeconds = (performance.now() - started) / 1000;
  const convexRestarts = Array.from({ length: restarts }, () =>
    fitLatentLogit(train, {
      lambda1: path.fit.lambda1,
      lambda2: path.fit.lambda2,
      ...tight,
      init: { w: randomInit(rng, d), U: randomInit(rng, n * d) },
    }),
  );
  methods.push({
    method: 'convex',
    recoveryError: relativeError(convexFit.B, truth),
    heldOutLogLik: meanLogLik(test, convexFit.B),
    seconds: convexSeconds,
    instability: maxSpread(
      convexRestarts.map((f) => f.B),
      convexFit.B,
    ),
    details: {
      lambda1: convexFit.lambda1,
      lambda2: convexFit.lambda2,
      lambda1Ratio: path.best.lambda1Ratio,
      lambda2Ratio: path.best.lambda2Ratio,
      rank: convexFit.rank,
      trueRank: setting.r,
      nonzeros: convexFit.nonzeros,
      pathPoints: path.points.length,
      converged: convexFit.certificate.converged ? 'yes' : 'no',
      relativeResidual: convexFit.certificate.relativeResidual,
      iterations: convexFit.certificate.iterations,
    },
  });

  // The same convex fit truncated to the rank chosen on the path's holdout (see RankSelection).
  const selection = path.rankSelection;
  if (selection !== undefined) {
    const k = selection.rank;
    const truncated = truncateFit(convexFit, k);
    methods.push({
      method: 'convex-rank',
      recoveryError: relativeError(truncated.B, truth),
      heldOutLogLik: meanLogLik(test, truncated.B),
      seconds: convexSeconds,
      instability: maxSpread(
        convexRestarts.map((f) => truncateFit(f, k).B),
        truncated.B,
      ),
      details: {
        rank: k,
        trueRank: setting.r,
        convexRank: convexFit.rank,
        heldOutNllByRank: selection.heldOutNll.map((v) => v.toFixed(4)).join(' '),
      },
    });
  }

  log(`[${label}] pooled logit`);
  started = performance.now();
  const pooled = fitPooledLogit(train);
  const pooledSeconds = (performance.now() - started) / 1000;
  const pooledRestarts = Array.from(
    { length: restarts },
    () => fitPooledLogit(train, { init: randomInit(rng, d) }).B,
  );
  methods.push({
    method: 'pooled',
    recoveryError: relativeError(pooled.B, truth),
    heldOutLogLik: meanLogLik(test, pooled.B),
    seconds: pooledSeconds,
    instability: maxSpread(pooledRestarts, pooled.B),
    details: {},
  });

  log(`[${label}] per-individual logits`);
  started = performance.now();
  const ridges = [0.3, 1, 3, 10];
  const ridge = selectRidge(train, ridges, seed);
  const per = fitPerIndividualLogit(train, { ridge });
  const perSeconds = (performance.now() - started) / 1000;
  const perRestarts = Array.from(
    { length: restarts },
    () => fitPerIndividualLogit(train, { ridge, init: randomInit(rng, n * d) }).B,
  );
  methods.push({
    method: 'per-individual',
    recoveryError: relativeError(per.B, truth),
    heldOutLogLik: meanLogLik(test, per.B),
    seconds: perSeconds,
    instability: maxSpread(perRestarts, per.B),
    details: { ridge },
  });

  // Mixed logit: each restart is a separate single-start fit; the procedure keeps the best likelihood.
  const draws = quick ? 30 : 60;
  const mixedFits: MixedLogitFit[] = [];
  started = performance.now();
  for (let s = 0; s < restarts; s++) {
    log(`[${label}] mixed logit start ${s + 1}/${restarts}`);
    mixedFits.push(
      fitMixedLogit(train, { draws, restarts: 1, seed: seed * 1000 + s, maxIter: quick ? 100 : 300 }),
    );
  }
  const mixedSeconds = (performance.now() - started) / 1000;
  const best = mixedFits.reduce((a, b) => (b.nll < a.nll ? b : a));
  methods.push({
    method: 'mixed',
    recoveryError: relativeError(best.B, truth),
    heldOutLogLik: mixedLogitHeldOutLogLik(best, test),
    seconds: mixedSeconds,
    instability: maxSpread(
      mixedFits.map((f) => f.B),
      best.B,
    ),
    details: {
      draws,
      startNll: mixedFits.map((f) => f.nll.toFixed(6)).join(' '),
      nllSpread: Math.max(...mixedFits.map((f) => f.nll)) - best.nll,
      meanSd: best.sd.reduce((a, b) => a + b, 0) / d,
      startsConverged: mixedFits.filter((f) => f.starts.every((s) => s.converged)).length,
    },
  });
  return { setting, oracleHeldOutLogLik: meanLogLik(test, truth), methods, convexPath: path.points };
}

/** The per-individual ridge with the best held-out likelihood on a per-individual split of the training data. */
function selectRidge(train: CompiledPanel, ridges: readonly number[], seed: number): number {
  const { train: fitPart, holdout } = splitHoldout(train, 0.25, seed);
  let best = ridges[0] as number;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const ridge of ridges) {
    const score = meanLogLik(holdout, fitPerIndividualLogit(fitPart, { ridge }).B);
    if (score > bestScore) {
      bestScore = score;
      best = ridge;
    }
  }
  return best;
}

export function runLogitRepro(options: LogitReproOptions = {}): LogitReproResult {
  const started = performance.now();
  const quick = options.quick === true;
  const seed = options.seed ?? 1;
  const restarts = options.restarts ?? 3;
  const log = options.log ?? (() => {});
  const settings = options.settings ?? (quick ? QUICK_SETTINGS : FULL_SETTINGS);
  // Settings that differ only in T share their truth (w, U) and test individuals, so error-vs-T is a
  // like-for-like comparison.
  const truthSeed = (s: ReproSetting): number =>
    Rng.derive(seed, s.n, s.d, s.r, s.kind === 'choice' ? 1 : 0).nextU32();
  const results = settings.map((s) => runSetting(s, truthSeed(s), quick, restarts, log));
  return { quick, seed, restarts, settings: results, seconds: (performance.now() - started) / 1000 };
}
