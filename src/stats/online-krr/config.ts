/** Configuration of an online-KRR forecasting run, with defaults and field-by-field validation. */
import { ConfigError, type Issue } from '../../core/errors.ts';
import type { KernelSpec, KernelType } from './kernels.ts';

export type Method = 'online' | 'fixed' | 'grid' | 'random';
export const METHODS: readonly Method[] = ['online', 'fixed', 'grid', 'random'];

export interface KrrConfig {
  readonly kernel: KernelSpec;
  /**
   * Sliding-window size W (training pairs kept). Default 288: one day of 5-minute data, and in the
   * repro's window study (README) a better forecaster than 144 for fixed and online hyperparameters on
   * all four series.
   */
  readonly window: number;
  /** Lagged values per feature vector. */
  readonly lags: number;
  /** Forecast horizon h in steps. */
  readonly horizon: number;
  /**
   * 'levels': x_t = (z_t, …, z_{t−L+1}); 'differences': the last L first differences, scaled to unit
   * variance (stationary under level drift, pairs naturally with the 'delta' target).
   */
  readonly features: 'levels' | 'differences';
  /** Add time-of-day (sin, cos) and weekend features when the series has calendar timestamps. */
  readonly calendar: boolean;
  /** 'delta' regresses y_{t+h} − y_t (falls back to persistence), 'level' regresses y_{t+h}. */
  readonly target: 'delta' | 'level';
  /** Initial (and, for 'fixed', permanent) hyperparameters; gamma default 1 / feature dimension. */
  readonly lambda: number;
  readonly gamma: number | null;
  readonly lambdaBounds: readonly [number, number];
  readonly gammaBounds: readonly [number, number];
  /** Online learning: one hypergradient step on the validation signal every `every` new points. */
  readonly online: {
    /**
     * Step interval. Default 96 with the 'recent' signal: each accepted step costs one O(n³) refresh, so
     * the interval sets the tuning cost; at 48 the 'recent' signal cost 0.150–0.170 of the grid's total
     * compute at window 288, at 96 0.109–0.118 with equal or lower error on all four repro series (README).
     */
    readonly every: number;
    readonly stepSize: number;
    /** Largest change of log λ or log γ per step. */
    readonly maxStep: number;
    /**
     * Validation signal (default 'recent'). 'loo': closed-form leave-block-out error over the whole window (blocks of
     * `blockSize`). 'recent': the most recent forecast errors — the newest `recent` points forecast by
     * the window's older points (h − 1 points in between left out), see loo.ts recentGradient.
     * 'both': log(recent error) + log(leave-block-out error), i.e. the geometric mean of the two: the
     * sum of both gradients, a step kept only if the sum did not rise.
     */
    readonly signal: 'loo' | 'recent' | 'both';
    /**
     * Points scored by the 'recent' signal (default: min(`every`, ⌊window / 3⌋): the points that arrived
     * since the last step, capped so that most of the window is left to forecast them from).
     */
    readonly recent: number | null;
    /** Validation signal: leave-block-out with contiguous blocks of this many points (1 = LOO). */
    readonly blockSize: number;
    /**
     * 'loo' signal: neighbours left out but not scored on each side of a block (leave-block-out with a
     * buffer; see loo.ts). 0 = plain leave-block-out; null = horizon − 1 (the neighbours whose h-step
     * targets overlap the block's).
     */
    readonly buffer: number | null;
    /** Blocks sampled for the γ-gradient estimate (0 = all blocks, exact). */
    readonly gradientBlocks: number;
    /** Proposed steps smaller than this in both log λ and log γ are skipped (no refresh spent). */
    readonly minStep: number;
    /** Accept a step when the new LOO error is at most (1 + tolerance) × the old one. */
    readonly acceptTolerance: number;
    /**
     * Coarse probe ('recent' signal only; 0 = off): at the first step and then every `probeEvery`-th
     * step, the recent forecast error is also evaluated on a coarse `probeGrid` × `probeGrid` log grid
     * spanning the bounds, each point by a direct refit on the window's older points (loo.ts
     * recentErrorAt, ≈ a ninth of an n³ refresh at n = 288; counted as tuning). When the best of them is
     * significantly better than the current error (`probeZ`), the step moves there instead of along the
     * gradient. Gradient steps are local (±maxStep) and the error surface is not convex: on the traffic
     * series, wide-γ settings form a plateau where the model reduces to persistence and the gradient
     * vanishes, and the good region is a diagonal valley (small γ with matching λ) that no single-axis
     * move reaches; a coarse global look finds it whatever the start.
     */
    readonly probeEvery: number;
    /** Points per axis of the coarse probe grid (log-spaced over lambdaBounds × gammaBounds, >= 2). */
    readonly probeGrid: number;
    readonly probeZ: number;
    /**
     * Conditioning guard (0 = off): a hyperparameter move (gradient step or probe) followed within this
     * many points by a drift refresh of the incremental inverse is undone (one refresh, counted as
     * tuning), and the ceiling on the condition bound κ̂ = (max row sum of K + λ) / λ ≥ cond(K + λI)
     * drops to the geometric mean of κ̂ before and after the move. Later moves to a κ̂ above the ceiling
     * (and above the current κ̂) are refused before any forecast uses them. No drift refresh, no effect.
     */
    readonly guardPoints: number;
  };
  /** Periodic re-tuning (grid / random search with rolling-origin cross-validation). */
  readonly retune: {
    readonly every: number;
    readonly folds: number;
    readonly gridLambdas: number;
    readonly gridGammas: number;
    readonly randomCandidates: number;
  };
  readonly driftTolerance: number;
  readonly driftCheckEvery: number;
  /** Longest interval between drift checks while drift stays below driftTolerance / 100 (see window.ts). */
  readonly driftCheckMax: number;
  /** Reuse a predicted point's kernel row when it is inserted h steps later (same values, fewer flops). */
  readonly reuseKernelRows: boolean;
  readonly seed: number;
}

export type KrrConfigInput = Partial<Omit<KrrConfig, 'online' | 'retune'>> & {
  readonly online?: Partial<KrrConfig['online']>;
  readonly retune?: Partial<KrrConfig['retune']>;
};

export const DEFAULT_KRR_CONFIG: KrrConfig = {
  kernel: { type: 'rbf' },
  window: 288,
  lags: 6,
  horizon: 3,
  features: 'levels',
  calendar: true,
  target: 'delta',
  lambda: 0.1,
  gamma: null,
  lambdaBounds: [1e-4, 10],
  gammaBounds: [1e-3, 10],
  online: {
    every: 96,
    stepSize: 1,
    maxStep: 0.5,
    minStep: 0.05,
    signal: 'recent',
    recent: null,
    blockSize: 12,
    buffer: 0,
    gradientBlocks: 2,
    acceptTolerance: 0,
    probeEvery: 8,
    probeGrid: 3,
    probeZ: 2,
    guardPoints: 96,
  },
  retune: { every: 48, folds: 3, gridLambdas: 7, gridGammas: 7, randomCandidates: 20 },
  driftTolerance: 1e-8,
  driftCheckEvery: 32,
  driftCheckMax: 256,
  reuseKernelRows: true,
  seed: 1,
};

/** Points scored by the 'recent' validation signal (see KrrConfig.online.recent). */
export function recentPoints(config: KrrConfig): number {
  return config.online.recent ?? Math.max(1, Math.min(config.online.every, Math.floor(config.window / 3)));
}

/** Neighbours left out each side of a leave-block-out block (see KrrConfig.online.buffer). */
export function looBuffer(config: KrrConfig): number {
  return config.online.buffer ?? config.horizon - 1;
}

const KERNELS: readonly KernelType[] = ['rbf', 'laplacian', 'linear', 'polynomial'];

/** Fills defaults and validates; every problem is reported at once as a ConfigError. */
/** Checks the `online` and `retune` sections only when `method` uses them (all of them when omitted). */
export function resolveKrrConfig(input: KrrConfigInput = {}, method?: Method): KrrConfig {
  const usesOnline = method === undefined || method === 'online';
  const usesRetune = method === undefined || method === 'grid' || method === 'random';
  const d = DEFAULT_KRR_CONFIG;
  const config: KrrConfig = {
    ...d,
    ...input,
    online: { ...d.online, ...input.online },
    retune: { ...d.retune, ...input.retune },
  };
  const issues: Issue[] = [];
  const int = (path: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min)
      issues.push({ path, message: `must be an integer >= ${min}, got ${v}` });
  };
  const pos = (path: string, v: number) => {
    if (!Number.isFinite(v) || v <= 0) issues.push({ path, message: `must be finite and > 0, got ${v}` });
  };
  if (!KERNELS.includes(config.kernel.type)) {
    issues.push({ path: 'kernel.type', message: `must be one of ${KERNELS.join(', ')}` });
  }
  int('window', config.window, 4);
  int('lags', config.lags, 1);
  int('horizon', config.horizon, 1);
  if (config.features !== 'levels' && config.features !== 'differences') {
    issues.push({ path: 'features', message: "must be 'levels' or 'differences'" });
  }
  if (config.target !== 'delta' && config.target !== 'level') {
    issues.push({ path: 'target', message: "must be 'delta' or 'level'" });
  }
  pos('lambda', config.lambda);
  if (config.gamma !== null) pos('gamma', config.gamma);
  for (const [name, b] of [
    ['lambdaBounds', config.lambdaBounds],
    ['gammaBounds', config.gammaBounds],
  ] as const) {
    if (!(b[0] > 0 && b[1] > b[0] && Number.isFinite(b[1]))) {
      issues.push({ path: name, message: `must be 0 < low < high < ∞, got [${b[0]}, ${b[1]}]` });
    }
  }
  if (config.lambda < config.lambdaBounds[0] || config.lambda > config.lambdaBounds[1]) {
    issues.push({ path: 'lambda', message: 'must lie within lambdaBounds' });
  }
  if (
    config.gamma !== null &&
    (config.gamma < config.gammaBounds[0] || config.gamma > config.gammaBounds[1])
  ) {
    issues.push({ path: 'gamma', message: 'must lie within gammaBounds' });
  }
  int('online.every', config.online.every, 1);
  pos('online.stepSize', config.online.stepSize);
  pos('online.maxStep', config.online.maxStep);
  if (!(config.online.minStep >= 0 && config.online.minStep < config.online.maxStep)) {
    issues.push({ path: 'online.minStep', message: 'must be >= 0 and below online.maxStep' });
  }
  int('online.blockSize', config.online.blockSize, 1);
  if (!['loo', 'recent', 'both'].includes(config.online.signal)) {
    issues.push({ path: 'online.signal', message: "must be 'loo', 'recent' or 'both'" });
  }
  if (config.online.recent !== null) int('online.recent', config.online.recent, 1);
  const recent = recentPoints(config);
  if (
    usesOnline &&
    config.online.signal !== 'loo' &&
    Number.isInteger(config.window) &&
    recent + config.horizon - 1 > config.window - 2
  ) {
    issues.push({
      path: 'online.recent',
      message: `${recent} recent points and a gap of ${config.horizon - 1} leave too little of a ${config.window}-point window`,
    });
  }
  if (config.online.buffer !== null) int('online.buffer', config.online.buffer, 0);
  int('online.gradientBlocks', config.online.gradientBlocks, 0);
  if (
    usesOnline &&
    config.online.signal !== 'recent' &&
    Number.isInteger(config.window) &&
    config.online.blockSize * 2 > config.window
  ) {
    issues.push({ path: 'online.blockSize', message: 'must be at most half the window' });
  } else if (
    usesOnline &&
    config.online.signal !== 'recent' &&
    Number.isInteger(config.window) &&
    config.online.blockSize * 2 + looBuffer(config) > config.window
  ) {
    issues.push({ path: 'online.buffer', message: 'two blocks and the buffer must fit in the window' });
  }
  int('online.probeEvery', config.online.probeEvery, 0);
  if (!(Number.isFinite(config.online.probeZ) && config.online.probeZ >= 0))
    issues.push({ path: 'online.probeZ', message: 'must be finite and >= 0' });
  int('online.probeGrid', config.online.probeGrid, 2);
  int('online.guardPoints', config.online.guardPoints, 0);
  if (!(config.online.acceptTolerance >= 0))
    issues.push({ path: 'online.acceptTolerance', message: 'must be >= 0' });
  int('retune.every', config.retune.every, 1);
  int('retune.folds', config.retune.folds, 1);
  int('retune.gridLambdas', config.retune.gridLambdas, 1);
  int('retune.gridGammas', config.retune.gridGammas, 1);
  int('retune.randomCandidates', config.retune.randomCandidates, 1);
  if (!(config.driftTolerance > 0)) issues.push({ path: 'driftTolerance', message: 'must be > 0' });
  int('driftCheckEvery', config.driftCheckEvery, 1);
  int('driftCheckMax', config.driftCheckMax, 1);
  if (Number.isInteger(config.driftCheckMax) && config.driftCheckMax < config.driftCheckEvery) {
    issues.push({ path: 'driftCheckMax', message: 'must be at least driftCheckEvery' });
  }
  if (typeof config.reuseKernelRows !== 'boolean') {
    issues.push({ path: 'reuseKernelRows', message: 'must be true or false' });
  }
  int('seed', config.seed, 0);
  if (usesRetune && Number.isInteger(config.window) && Number.isInteger(config.retune.folds)) {
    const v = Math.floor(config.window / (config.retune.folds + 1));
    if (v - (config.horizon - 1) < 2) {
      issues.push({
        path: 'retune.folds',
        message: `window ${config.window} is too small for ${config.retune.folds} folds at horizon ${config.horizon}`,
      });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, 'KRR config');
  return config;
}
