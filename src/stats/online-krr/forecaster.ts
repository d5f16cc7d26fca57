/**
 * Rolling h-step-ahead forecasting with sliding-window KRR under four hyperparameter policies:
 *  - online: every `online.every` new points, one gradient step in (log λ, log γ) on the log of the
 *    validation signal (leave-block-out MSE, or the most recent forecast errors), clipped, kept inside
 *    bounds, and accepted only when the signal (recomputed after the refresh the change requires) does
 *    not rise; otherwise the saved K, M are restored and the step halves.
 *  - fixed: the initial λ, γ throughout.
 *  - grid / random: every `retune.every` points, rolling-origin CV over a log grid / random log-uniform
 *    draws, then a refresh with the winner.
 * All methods see identical data, windows and evaluation range; compute is metered (see meter.ts).
 */
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import {
  type KrrConfig,
  type KrrConfigInput,
  looBuffer,
  type Method,
  recentPoints,
  resolveKrrConfig,
} from './config.ts';
import type { Series } from './data.ts';
import { makeKernel } from './kernels.ts';
import {
  blocksOf,
  looGradient,
  looResiduals,
  recentErrorAt,
  recentGradient,
  recentResiduals,
  significantlyBetter,
} from './loo.ts';
import { ComputeMeter, type ComputeTotals } from './meter.ts';
import { type Candidate, gridCandidates, randomCandidates, retune } from './tuning.ts';
import { KrrWindow } from './window.ts';

export interface HyperPoint {
  /** Series index t at which the hyperparameters took these values. */
  readonly t: number;
  readonly lambda: number;
  readonly gamma: number;
}

export interface KrrRunResult {
  readonly method: Method;
  readonly series: string;
  readonly horizon: number;
  /** Errors in the series' own units over the common evaluation range. */
  readonly rmse: number;
  readonly mae: number;
  readonly persistenceRmse: number;
  readonly persistenceMae: number;
  readonly evaluated: number;
  /** Index of the first forecast target evaluated. */
  readonly evalStart: number;
  /** predictions[i] forecasts values[i] (NaN outside the evaluation range). */
  readonly predictions: Float64Array;
  readonly compute: ComputeTotals & {
    /** Flops spent choosing hyperparameters (gradients, trial refreshes, CV, post-retune refreshes). */
    readonly tuningFlops: number;
    readonly hyperSteps: number;
    readonly rejectedSteps: number;
    /** Online steps too small to be worth a refresh. */
    readonly skippedSteps: number;
    /** Coarse probes: coarse-grid evaluations, and steps that moved to a probed point. */
    readonly probes: number;
    readonly probeMoves: number;
    /** Conditioning guard: moves undone after a drift refresh, and moves refused by the κ̂ ceiling. */
    readonly guardUndos: number;
    readonly guardRefusals: number;
    readonly retunes: number;
    readonly stabilityRefreshes: number;
  };
  readonly maxDrift: number;
  readonly wallMs: number;
  readonly trajectory: readonly HyperPoint[];
}

const DAY_MS = 86_400_000;

export interface FeatureSet {
  readonly z: Float64Array;
  readonly mean: number;
  readonly scale: number;
  readonly dim: number;
  /** First index t with a complete feature vector. */
  readonly first: number;
  features(t: number): Float64Array;
}

/** Standardized series (mean/sd of the warm-up prefix only, so no future data leaks) and features. */
export function buildFeatures(series: Series, config: KrrConfig): FeatureSet {
  const values = series.values;
  const warm = Math.min(values.length, config.window + config.lags + config.horizon);
  let mean = 0;
  for (let i = 0; i < warm; i++) mean += values[i] as number;
  mean /= warm;
  let varSum = 0;
  for (let i = 0; i < warm; i++) varSum += ((values[i] as number) - mean) ** 2;
  const scale = Math.sqrt(varSum / warm) || 1;
  const z = Float64Array.from(values, (v) => (v - mean) / scale);
  const differences = config.features === 'differences';
  let diffVar = 0;
  for (let i = 1; i < warm; i++) diffVar += ((z[i] as number) - (z[i - 1] as number)) ** 2;
  const diffScale = Math.sqrt(diffVar / Math.max(1, warm - 1)) || 1;
  const calendar = config.calendar && series.stepsPerDay !== undefined;
  const dim = config.lags + (calendar ? 3 : 0);
  const features = (t: number): Float64Array => {
    const x = new Float64Array(dim);
    for (let l = 0; l < config.lags; l++) {
      x[l] = differences
        ? ((z[t - l] as number) - (z[t - l - 1] as number)) / diffScale
        : (z[t - l] as number);
    }
    if (calendar) {
      const ts = series.timestamps[t] as number;
      const phase = (2 * Math.PI * (((ts % DAY_MS) + DAY_MS) % DAY_MS)) / DAY_MS;
      x[config.lags] = Math.sin(phase);
      x[config.lags + 1] = Math.cos(phase);
      const weekday = new Date(ts).getUTCDay();
      x[config.lags + 2] = weekday === 0 || weekday === 6 ? 1 : 0;
    }
    return x;
  };
  return { z, mean, scale, dim, first: differences ? config.lags : config.lags - 1, features };
}

export function validateSeries(series: Series, config: KrrConfig): void {
  const n = series.values.length;
  if (series.timestamps.length !== n) {
    throw new ShapeError(`series '${series.name}': ${series.timestamps.length} timestamps for ${n} values`);
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(series.values[i] as number))
      throw new NonFiniteError(`series '${series.name}': value ${i} is not finite`);
  }
  const needed = config.lags + 1 + config.horizon + config.window + config.horizon;
  if (n < needed) {
    throw new OrchardError(
      'DATA_INVALID',
      `series '${series.name}' has ${n} points; window ${config.window}, lags ${config.lags} and horizon ${config.horizon} need at least ${needed}`,
    );
  }
}

/** Runs one method over a series. */
export function runKrr(series: Series, method: Method, input: KrrConfigInput = {}): KrrRunResult {
  const config = resolveKrrConfig(input, method);
  validateSeries(series, config);
  const started = performance.now();
  const { z, mean, scale, dim, first, features } = buildFeatures(series, config);
  const meter = new ComputeMeter();
  const kernel = makeKernel(config.kernel);
  const gamma0 = config.gamma ?? Math.min(config.gammaBounds[1], Math.max(config.gammaBounds[0], 1 / dim));
  const window = new KrrWindow(kernel, config.window, dim, config.lambda, gamma0, meter, {
    driftTolerance: config.driftTolerance,
    driftCheckEvery: config.driftCheckEvery,
    driftCheckMax: config.driftCheckMax,
    reuseKernelRows: config.reuseKernelRows,
  });
  const rng = Rng.derive(config.seed, 0x6b7272);
  const n = z.length;
  const h = config.horizon;
  const evalOrigin = first + h + config.window - 1;
  const predictions = new Float64Array(n).fill(Number.NaN);
  const trajectory: HyperPoint[] = [{ t: 0, lambda: window.lambda, gamma: window.gamma }];
  const target = (t: number) =>
    config.target === 'delta' ? (z[t + h] as number) - (z[t] as number) : (z[t + h] as number);
  const base = (t: number) => (config.target === 'delta' ? (z[t] as number) : 0);

  let stepSize = config.online.stepSize;
  let hyperSteps = 0;
  let rejectedSteps = 0;
  let skippedSteps = 0;
  let probes = 0;
  let probeMoves = 0;
  const guarding = method === 'online' && config.online.guardPoints > 0;
  /** Ceiling on the condition bound κ̂ of a move's K + λI (tightened when a move needed drift refreshes). */
  let conditionCeiling = Number.POSITIVE_INFINITY;
  let guardUndos = 0;
  let guardRefusals = 0;
  /** The last move that raised κ̂, watched for drift refreshes during the next guardPoints points. */
  let watched: {
    at: number;
    refreshes: number;
    lambda: number;
    gamma: number;
    before: number;
    after: number;
  } | null = null;
  /** Steps until a coarse probe may run again (0: the next skipped step probes). */
  let probeWait = 0;
  const probing = config.online.probeEvery > 0 && config.online.signal === 'recent';
  /** Cell centres of a k × k partition of the log box: interior points, never the extreme corners. */
  const centres = (b: readonly [number, number], k: number) =>
    Array.from({ length: k }, (_, i) => Math.exp(Math.log(b[0]) + ((i + 0.5) * Math.log(b[1] / b[0])) / k));
  const probeCandidates: Candidate[] = centres(config.gammaBounds, config.online.probeGrid).flatMap((gamma) =>
    centres(config.lambdaBounds, config.online.probeGrid).map((lambda) => ({ lambda, gamma })),
  );
  let retunes = 0;
  let tuningFlops = 0;
  let sinceFull = 0;
  const logLambdaBounds = config.lambdaBounds.map(Math.log) as [number, number];
  const logGammaBounds = config.gammaBounds.map(Math.log) as [number, number];
  const clamp = (v: number, b: readonly [number, number]) => Math.min(b[1], Math.max(b[0], v));
  const grid = gridCandidates(
    config.lambdaBounds,
    config.gammaBounds,
    config.retune.gridLambdas,
    config.retune.gridGammas,
  );

  const recent = recentPoints(config);
  const gap = h - 1;
  /** The validation signal's gradient and value (see config.online.signal). */
  const looSignalGradient = () => {
    const blockSize = config.online.blockSize;
    const blockCount = blocksOf(window.size, blockSize).length;
    let blocks: number[] | null = null;
    if (config.online.gradientBlocks > 0 && config.online.gradientBlocks < blockCount) {
      blocks = Array.from(rng.permutation(blockCount).subarray(0, config.online.gradientBlocks));
    }
    return looGradient(window, { blockSize, blocks, buffer: looBuffer(config) });
  };
  /** 'both': the geometric mean of the two errors; its log-gradient is the mean of their log-gradients. */
  const signalGradient = () => {
    if (config.online.signal === 'recent') return recentGradient(window, recent, gap);
    if (config.online.signal === 'loo') return looSignalGradient();
    const a = recentGradient(window, recent, gap);
    const b = looSignalGradient();
    return {
      mse: Math.sqrt(a.mse * b.mse),
      dLogLambda: (a.dLogLambda + b.dLogLambda) / 2,
      dLogGamma: (a.dLogGamma + b.dLogGamma) / 2,
    };
  };
  const looValue = () => looResiduals(window, config.online.blockSize, looBuffer(config)).mse;
  const signalValue = () => {
    if (config.online.signal === 'recent') return recentResiduals(window, recent, gap).mse;
    if (config.online.signal === 'loo') return looValue();
    return Math.sqrt(recentResiduals(window, recent, gap).mse * looValue());
  };

  /**
   * Coarse probe: the recent error at each point of the coarse grid; moves to the best when it is
   * significantly better than the current error. Returns whether it moved.
   */
  const probe = (t: number): boolean => {
    const current = recentResiduals(window, recent, gap);
    const candidates = probeCandidates
      .filter((c) => c.lambda !== window.lambda || c.gamma !== window.gamma)
      .map((c): [number, number] => [Math.log(c.lambda), Math.log(c.gamma)]);
    const better: [number, number, number][] = [];
    for (const [ll, lg] of candidates) {
      probes++;
      const v = recentErrorAt(window, recent, gap, Math.exp(ll), Math.exp(lg));
      if (
        v !== null &&
        v.mse < current.mse &&
        significantlyBetter(current.residuals, v.residuals, h, config.online.probeZ)
      ) {
        better.push([v.mse, ll, lg]);
      }
    }
    // The best significant point whose conditioning the guard accepts.
    for (const [, ll, lg] of better.sort((a, b) => a[0] - b[0])) {
      const lambda = Math.exp(ll);
      const gamma = Math.exp(lg);
      if (!guardedMove(lambda, gamma)) continue;
      trajectory.push({ t, lambda, gamma });
      probeMoves++;
      return true;
    }
    return false;
  };

  /**
   * Moves to (λ, γ) (one refresh) unless the guard refuses it: its condition bound is above the ceiling
   * and above the current one. A refused move is undone from a saved copy (no refactorization).
   * Returns the saved state of the move (to undo it if the step's signal rose) or null when refused.
   */
  const guardedMove = (lambda: number, gamma: number): ReturnType<KrrWindow['saveState']> | null => {
    const saved = window.saveState();
    const before = guarding ? window.conditionBound() : 0;
    window.setHyper(lambda, gamma);
    if (!guarding) return saved;
    const after = window.conditionBound();
    if (after > conditionCeiling && after > before) {
      window.restoreState(saved);
      guardRefusals++;
      return null;
    }
    watched =
      after > before
        ? {
            at: sinceFull,
            refreshes: window.stabilityRefreshes,
            lambda: saved.lambda,
            gamma: saved.gamma,
            before,
            after,
          }
        : null;
    return saved;
  };
  /** Undoes the watched move when drift refreshes followed it, and lowers the ceiling below its κ̂. */
  const guardCheck = (t: number) => {
    if (watched === null) return;
    if (window.stabilityRefreshes > watched.refreshes) {
      conditionCeiling = Math.min(conditionCeiling, Math.sqrt(watched.before * watched.after));
      window.setHyper(watched.lambda, watched.gamma);
      trajectory.push({ t, lambda: watched.lambda, gamma: watched.gamma });
      guardUndos++;
      watched = null;
    } else if (sinceFull - watched.at >= config.online.guardPoints) {
      watched = null;
    }
  };

  const onlineStep = (t: number) => {
    const g = signalGradient();
    hyperSteps++;
    if (probeWait > 0) probeWait--;
    const clip = (v: number) => Math.max(-config.online.maxStep, Math.min(config.online.maxStep, v));
    const ll = clamp(Math.log(window.lambda) + clip(-stepSize * g.dLogLambda), logLambdaBounds);
    const lg = clamp(Math.log(window.gamma) + clip(-stepSize * g.dLogGamma), logGammaBounds);
    if (!Number.isFinite(ll + lg)) return;
    const moved = Math.max(Math.abs(ll - Math.log(window.lambda)), Math.abs(lg - Math.log(window.gamma)));
    // A negligible move is not worth the O(n³) refresh it would cost.
    if (moved === 0 || moved < config.online.minStep) {
      skippedSteps++;
      // The gradient is flat (or pinned at a bound): it has nothing to say here, so look further.
      if (probing && probeWait === 0) {
        probe(t);
        probeWait = config.online.probeEvery;
      }
      return;
    }
    const lambda = Math.exp(ll);
    const gamma = Math.exp(lg);
    const saved = guardedMove(lambda, gamma);
    if (saved === null) {
      // Refused by the conditioning guard: a shorter step may stay below the ceiling.
      stepSize = Math.max(stepSize * 0.5, config.online.stepSize / 64);
      rejectedSteps++;
      return;
    }
    const trial = signalValue();
    if (trial <= g.mse * (1 + config.online.acceptTolerance)) {
      stepSize = Math.min(stepSize * 1.25, config.online.stepSize * 8);
      trajectory.push({ t, lambda, gamma });
    } else {
      // Backtrack: the LOO error rose, so undo (no refactorization needed) and shrink the step.
      window.restoreState(saved);
      watched = null;
      stepSize = Math.max(stepSize * 0.5, config.online.stepSize / 64);
      rejectedSteps++;
    }
  };
  const tune = (t: number, candidates: readonly Candidate[]) => {
    retune(window, candidates, h, config.retune.folds);
    retunes++;
    trajectory.push({ t, lambda: window.lambda, gamma: window.gamma });
  };

  let sse = 0;
  let sae = 0;
  let pSse = 0;
  let pSae = 0;
  let evaluated = 0;
  for (let t = first; t < n; t++) {
    const origin = t - h;
    if (origin >= first) {
      if (window.full) window.removeOldest();
      window.add(features(origin), target(origin));
      if (window.full) {
        const before = meter.flops;
        if (guarding) guardCheck(t);
        if (method === 'online' && sinceFull > 0 && sinceFull % config.online.every === 0) onlineStep(t);
        if ((method === 'grid' || method === 'random') && sinceFull % config.retune.every === 0) {
          tune(
            t,
            method === 'grid'
              ? grid
              : randomCandidates(
                  config.lambdaBounds,
                  config.gammaBounds,
                  config.retune.randomCandidates,
                  rng,
                ),
          );
        }
        tuningFlops += meter.flops - before;
        sinceFull++;
      }
    }
    if (t >= evalOrigin && t + h < n) {
      const alpha = window.alpha();
      const zHat = base(t) + window.predict(features(t), alpha);
      const truth = series.values[t + h] as number;
      const pred = mean + scale * zHat;
      predictions[t + h] = pred;
      const err = pred - truth;
      const pErr = (series.values[t] as number) - truth;
      sse += err * err;
      sae += Math.abs(err);
      pSse += pErr * pErr;
      pSae += Math.abs(pErr);
      evaluated++;
    }
  }
  return {
    method,
    series: series.name,
    horizon: h,
    rmse: Math.sqrt(sse / evaluated),
    mae: sae / evaluated,
    persistenceRmse: Math.sqrt(pSse / evaluated),
    persistenceMae: pSae / evaluated,
    evaluated,
    evalStart: evalOrigin + h,
    predictions,
    compute: {
      ...meter.snapshot(),
      tuningFlops,
      hyperSteps,
      rejectedSteps,
      skippedSteps,
      probes,
      probeMoves,
      guardUndos,
      guardRefusals,
      retunes,
      stabilityRefreshes: window.stabilityRefreshes,
    },
    maxDrift: window.maxDrift,
    wallMs: performance.now() - started,
    trajectory,
  };
}
