/**
 * Convex latent-effect logit: β_i = w + u_i, minimize meanNLL(B) + λ1‖w‖₁ + λ2‖U‖_* by accelerated
 * proximal gradient (FISTA) with backtracking and function-value restarts.
 *
 * Conditioning: w enters every individual's utility, u_i only one, so the curvature along w is about
 * (number of situations / largest T_i) times that along U. A single step size would leave U crawling,
 * so the proximal step uses the block metric L·diag(ρ I_w, I_U) with that ratio ρ; the prox is still
 * separable (soft-threshold at λ1/(ρL), singular-value threshold at λ2/L), and backtracking on L keeps
 * the majorization valid.
 */
import { OrchardError } from '../../core/errors.ts';
import { type CompiledPanel, compilePanel, type Panel, situationCount, splitHoldout } from './data.ts';
import { composeCoefficients, meanNll, situationNlls } from './model.ts';
import { singularValueThreshold, softThreshold, spectralNorm, truncateRank } from './prox.ts';

export interface SolverOptions {
  /**
   * Iteration cap (default 5000). The solver also stops early after 100 consecutive steps whose objective
   * change is at rounding level; the certificate then says whether the residual test was met.
   */
  readonly maxIter?: number;
  /** Relative objective change |F_k − F_{k−1}| / max(1, |F_k|) needed to stop (default 1e-9). */
  readonly tol?: number;
  /** Relative proximal-gradient-mapping residual needed to stop (default 1e-5); see ConvergenceCertificate. */
  readonly optTol?: number;
}

export interface LatentLogitOptions extends SolverOptions {
  readonly lambda1: number;
  readonly lambda2: number;
  /** Warm start (w of length d, U of n × d); default zeros. */
  readonly init?: { readonly w: ArrayLike<number>; readonly U: ArrayLike<number> };
}

export interface ConvergenceCertificate {
  /** Both criteria met: small relative objective change AND small optimality residual. */
  readonly converged: boolean;
  readonly iterations: number;
  /** Relative objective change over the last accepted step. */
  readonly relativeChange: number;
  /**
   * ‖G_w‖₂ and ‖G_U‖_F of the proximal-gradient mapping G(x) = M(x − prox(x − M⁻¹∇f(x))) at the
   * returned point (M the block metric). G = ∇f + (a subgradient of the penalty at the prox point), so it
   * vanishes exactly at an optimum.
   */
  readonly residualW: number;
  readonly residualU: number;
  /** max(residualW / λ1_max, residualU / λ2_max): the residual relative to the gradient scale at 0. */
  readonly relativeResidual: number;
  /** Momentum resets triggered by an objective increase. */
  readonly restarts: number;
  readonly tol: number;
  readonly optTol: number;
}

export interface LatentLogitFit {
  readonly n: number;
  readonly d: number;
  readonly lambda1: number;
  readonly lambda2: number;
  /** Shared sparse effect. */
  readonly w: Float64Array;
  /** Latent effects, n × d row-major (row i = u_i). */
  readonly U: Float64Array;
  /** Individual coefficients β_i = w + u_i, n × d row-major. */
  readonly B: Float64Array;
  /** meanNLL + λ1‖w‖₁ + λ2‖U‖_*. */
  readonly objective: number;
  readonly nll: number;
  readonly rank: number;
  readonly singularValues: readonly number[];
  /** Nonzero entries of w. */
  readonly nonzeros: number;
  readonly certificate: ConvergenceCertificate;
  readonly seconds: number;
}

function asCompiled(panel: Panel | CompiledPanel): CompiledPanel {
  return 'kind' in panel ? compilePanel(panel) : panel;
}

function checkLambda(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new OrchardError('INVALID_ARGUMENT', `${name} must be a finite number ≥ 0, got ${value}`);
  }
}

/** Gradient of the mean NLL at (w, U): returns f, fills gw (d) and gU (n × d). */
function objectiveGradient(
  panel: CompiledPanel,
  B: Float64Array,
  gw: Float64Array,
  gU: Float64Array,
): number {
  const f = meanNll(panel, B, gU);
  gw.fill(0);
  const d = panel.d;
  for (let i = 0; i < panel.n; i++)
    for (let k = 0; k < d; k++) gw[k] = (gw[k] as number) + (gU[i * d + k] as number);
  return f;
}

export interface LambdaMax {
  /** ‖∇_w NLL(0)‖_∞: for λ1 ≥ this (and λ2 ≥ lambda2), w = 0. */
  readonly lambda1: number;
  /** ‖∇_U NLL(0)‖₂ (spectral norm): for λ2 ≥ this (and λ1 ≥ lambda1), U = 0. */
  readonly lambda2: number;
}

/** The smallest penalties at which (w, U) = (0, 0) satisfies the optimality conditions. */
export function lambdaMax(panel: Panel | CompiledPanel): LambdaMax {
  const p = asCompiled(panel);
  const gw = new Float64Array(p.d);
  const gU = new Float64Array(p.n * p.d);
  objectiveGradient(p, new Float64Array(p.n * p.d), gw, gU);
  let l1 = 0;
  for (const g of gw) l1 = Math.max(l1, Math.abs(g));
  return { lambda1: l1, lambda2: spectralNorm(gU, p.n, p.d) };
}

function l1Norm(v: Float64Array): number {
  let s = 0;
  for (const x of v) s += Math.abs(x);
  return s;
}

/** ρ = total situations / largest per-individual count: the w-to-U curvature ratio (see header). */
function blockRatio(panel: CompiledPanel): number {
  let maxT = 1;
  for (let i = 0; i < panel.n; i++) maxT = Math.max(maxT, situationCount(panel, i));
  return panel.situations / maxT;
}

/** Fits the convex latent-effect logit at fixed (λ1, λ2). */
export function fitLatentLogit(panel: Panel | CompiledPanel, options: LatentLogitOptions): LatentLogitFit {
  const started = performance.now();
  const p = asCompiled(panel);
  const { n, d } = p;
  const { lambda1, lambda2 } = options;
  checkLambda('lambda1', lambda1);
  checkLambda('lambda2', lambda2);
  const maxIter = options.maxIter ?? 5000;
  const tol = options.tol ?? 1e-9;
  const optTol = options.optTol ?? 1e-5;
  if (!(Number.isInteger(maxIter) && maxIter >= 1))
    throw new OrchardError('INVALID_ARGUMENT', `maxIter must be a positive integer, got ${maxIter}`);
  if (!(tol > 0) || !(optTol > 0))
    throw new OrchardError('INVALID_ARGUMENT', 'tol and optTol must be positive');

  let xw: Float64Array = new Float64Array(d);
  let xU: Float64Array = new Float64Array(n * d);
  if (options.init !== undefined) {
    if (options.init.w.length !== d || options.init.U.length !== n * d) {
      throw new OrchardError(
        'SHAPE_MISMATCH',
        `init has w of length ${options.init.w.length} and U of ${options.init.U.length}; expected ${d} and ${n * d}`,
      );
    }
    xw = Float64Array.from(options.init.w);
    xU = Float64Array.from(options.init.U);
    for (const v of [...xw, ...xU]) {
      if (!Number.isFinite(v)) throw new OrchardError('NON_FINITE', 'init contains a non-finite value');
    }
  }
  const scale = lambdaMax(p);
  const rho = blockRatio(p);
  const gw = new Float64Array(d);
  const gU = new Float64Array(n * d);

  let fx = meanNll(p, composeCoefficients(xw, xU, n));
  // Singular values of the start (a zero threshold leaves them unchanged).
  const initial = singularValueThreshold(xU, n, d, 0);
  let xSingular: number[] = initial.singularValues;
  let xRank = initial.rank;
  let Fx = fx + lambda1 * l1Norm(xw) + lambda2 * xSingular.reduce((a, b) => a + b, 0);
  let yw = xw;
  let yU = xU;
  let t = 1;
  // Curvature guess: a logit's Hessian is at most ¼ Σ x xᵀ per binary situation; backtracking corrects it.
  let sq = 0;
  for (const x of p.x) for (const v of x) sq += v * v;
  let L = Math.max(1e-8, (0.25 * sq) / p.situations / Math.max(1, rho));
  let restarts = 0;
  let iterations = 0;
  let relativeChange = Number.POSITIVE_INFINITY;
  let momentum = false;
  let residual = {
    w: Number.POSITIVE_INFINITY,
    U: Number.POSITIVE_INFINITY,
    relative: Number.POSITIVE_INFINITY,
  };
  let converged = false;
  // Steps whose objective change is at rounding level: many in a row mean no further progress is possible.
  let flatSteps = 0;

  const proxStep = (
    pw: Float64Array,
    pU: Float64Array,
    sw: Float64Array,
    sU: Float64Array,
    step: number,
  ): { w: Float64Array; U: Float64Array; sv: number[]; rank: number } => {
    const vw = new Float64Array(d);
    for (let k = 0; k < d; k++) vw[k] = (pw[k] as number) - (sw[k] as number) / (rho * step);
    const vU = new Float64Array(n * d);
    for (let k = 0; k < n * d; k++) vU[k] = (pU[k] as number) - (sU[k] as number) / step;
    const svt = singularValueThreshold(vU, n, d, lambda2 / step);
    return {
      w: softThreshold(vw, lambda1 / (rho * step)),
      U: svt.value,
      sv: svt.singularValues,
      rank: svt.rank,
    };
  };

  const mappingResidual = (): typeof residual => {
    objectiveGradient(p, composeCoefficients(xw, xU, n), gw, gU);
    const z = proxStep(xw, xU, gw, gU, L);
    let rw = 0;
    for (let k = 0; k < d; k++) rw += (rho * L * ((xw[k] as number) - (z.w[k] as number))) ** 2;
    let ru = 0;
    for (let k = 0; k < n * d; k++) ru += (L * ((xU[k] as number) - (z.U[k] as number))) ** 2;
    rw = Math.sqrt(rw);
    ru = Math.sqrt(ru);
    const relW = scale.lambda1 > 0 ? rw / scale.lambda1 : rw;
    const relU = scale.lambda2 > 0 ? ru / scale.lambda2 : ru;
    return { w: rw, U: ru, relative: Math.max(relW, relU) };
  };

  while (iterations < maxIter) {
    iterations++;
    const fy = objectiveGradient(p, composeCoefficients(yw, yU, n), gw, gU);
    L = Math.max(L * 0.8, 1e-12);
    let z = proxStep(yw, yU, gw, gU, L);
    let fz = 0;
    for (let tries = 0; ; tries++) {
      fz = meanNll(p, composeCoefficients(z.w, z.U, n));
      let lin = 0;
      let quadW = 0;
      let quadU = 0;
      for (let k = 0; k < d; k++) {
        const dk = (z.w[k] as number) - (yw[k] as number);
        lin += (gw[k] as number) * dk;
        quadW += dk * dk;
      }
      for (let k = 0; k < n * d; k++) {
        const dk = (z.U[k] as number) - (yU[k] as number);
        lin += (gU[k] as number) * dk;
        quadU += dk * dk;
      }
      const bound = fy + lin + 0.5 * L * (rho * quadW + quadU);
      if (fz <= bound + 1e-13 * Math.abs(fy) || tries > 60) break;
      L *= 2;
      z = proxStep(yw, yU, gw, gU, L);
    }
    if (!Number.isFinite(fz))
      throw new OrchardError('DIVERGED', `latent logit objective became ${fz} at iteration ${iterations}`);
    const nuclear = z.sv.reduce((a, b) => a + b, 0);
    const Fz = fz + lambda1 * l1Norm(z.w) + lambda2 * nuclear;
    flatSteps = Math.abs(Fx - Fz) <= 4 * Number.EPSILON * Math.max(1, Math.abs(Fz)) ? flatSteps + 1 : 0;
    if (flatSteps >= 100) break;
    if (Fz > Fx && momentum) {
      // Function-value restart: drop the momentum and redo the step from x.
      restarts++;
      t = 1;
      yw = xw;
      yU = xU;
      momentum = false;
      continue;
    }
    relativeChange = Math.abs(Fx - Fz) / Math.max(1, Math.abs(Fz));
    const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
    const beta = (t - 1) / tNext;
    const nw = new Float64Array(d);
    for (let k = 0; k < d; k++) nw[k] = (z.w[k] as number) + beta * ((z.w[k] as number) - (xw[k] as number));
    const nU = new Float64Array(n * d);
    for (let k = 0; k < n * d; k++)
      nU[k] = (z.U[k] as number) + beta * ((z.U[k] as number) - (xU[k] as number));
    yw = nw;
    yU = nU;
    momentum = beta > 0;
    xw = z.w;
    xU = z.U;
    fx = fz;
    Fx = Fz;
    xSingular = z.sv;
    xRank = z.rank;
    t = tNext;
    if (relativeChange <= tol) {
      residual = mappingResidual();
      if (residual.relative <= optTol) {
        converged = true;
        break;
      }
    }
  }
  if (!converged) residual = mappingResidual();
  let nonzeros = 0;
  for (const v of xw) if (v !== 0) nonzeros++;
  return {
    n,
    d,
    lambda1,
    lambda2,
    w: xw,
    U: xU,
    B: composeCoefficients(xw, xU, n),
    objective: Fx,
    nll: fx,
    rank: xRank,
    singularValues: xSingular,
    nonzeros,
    certificate: {
      converged,
      iterations,
      relativeChange,
      residualW: residual.w,
      residualU: residual.U,
      relativeResidual: residual.relative,
      restarts,
      tol,
      optTol,
    },
    seconds: (performance.now() - started) / 1000,
  };
}

/** `count` ratios from 1 down to `minRatio`, evenly spaced in log scale. */
export function geometricGrid(count: number, minRatio: number): number[] {
  if (!(Number.isInteger(count) && count >= 1) || !(minRatio > 0 && minRatio <= 1)) {
    throw new OrchardError(
      'INVALID_ARGUMENT',
      `grid needs count ≥ 1 and minRatio in (0, 1], got ${count}, ${minRatio}`,
    );
  }
  if (count === 1) return [1];
  return Array.from({ length: count }, (_, k) => minRatio ** (k / (count - 1)));
}

export interface PathOptions {
  /** Multiples of λ1_max to try (default geometricGrid(6, 0.01)). */
  readonly lambda1Ratios?: readonly number[];
  /** Multiples of λ2_max to try (default geometricGrid(6, 0.01)). */
  readonly lambda2Ratios?: readonly number[];
  /** Share of each individual's situations held out for selection (default 0.25). */
  readonly holdoutFraction?: number;
  readonly seed?: number;
  readonly solver?: SolverOptions;
  /** Refit on all data at the selected λ (default true). */
  readonly refit?: boolean;
  /**
   * Also choose a rank for U by held-out likelihood of truncations of the selected fit (default true);
   * see RankSelection. The convex fit itself is returned unchanged in `fit`.
   */
  readonly selectRank?: boolean;
  readonly onPoint?: (point: PathPoint) => void;
}

export interface PathPoint {
  readonly lambda1: number;
  readonly lambda2: number;
  readonly lambda1Ratio: number;
  readonly lambda2Ratio: number;
  readonly trainNll: number;
  readonly heldOutNll: number;
  readonly rank: number;
  readonly nonzeros: number;
  readonly iterations: number;
  readonly converged: boolean;
}

/**
 * Rank chosen after the λ path. The nuclear norm shrinks every singular value by the same amount, so
 * the λ2 with the best held-out likelihood is one that keeps the signal's singular values large and
 * therefore lets small noise directions in (selected ranks of 5–9 for a true rank of 2–3 in the
 * reproduction). Truncating the selected training-split fit Û to its top k singular triplets
 * (k = 0 … rank) and keeping the smallest k within one paired standard error of the best held-out NLL
 * removes those directions without a second tuning loop: the candidates are nested and deterministic,
 * so the answer stays unique. (A one-standard-error rule on λ itself was tried and rejected: it moves
 * to a larger λ2, which shrinks the signal's singular values too and raised the recovery error.)
 */
export interface RankSelection {
  readonly rank: number;
  /** Held-out NLL of the truncation to k = 0, 1, … rank(Û) singular triplets. */
  readonly heldOutNll: readonly number[];
  /** The returned fit (`PathResult.fit`) truncated to `rank`: w unchanged, U of rank ≤ `rank`. */
  readonly w: Float64Array;
  readonly U: Float64Array;
  readonly B: Float64Array;
}

export interface PathResult {
  /** λ maxima of the training split, the path's reference scale. */
  readonly lambdaMax: LambdaMax;
  readonly points: readonly PathPoint[];
  /** The point with the lowest held-out NLL. */
  readonly best: PathPoint;
  /** Fit at the selected λ: on all data if `refit`, else the training-split fit. */
  readonly fit: LatentLogitFit;
  /** Present unless `selectRank` is false. */
  readonly rankSelection?: RankSelection;
  readonly seconds: number;
}

/** (w, U_k, B) with U truncated to its best rank-k approximation. */
export function truncateFit(
  fit: Pick<LatentLogitFit, 'w' | 'U' | 'n' | 'd'>,
  k: number,
): { w: Float64Array; U: Float64Array; B: Float64Array } {
  if (!(Number.isInteger(k) && k >= 0))
    throw new OrchardError('INVALID_ARGUMENT', `rank must be an integer ≥ 0, got ${k}`);
  const U = truncateRank(fit.U, fit.n, fit.d, k);
  return { w: fit.w, U, B: composeCoefficients(fit.w, U, fit.n) };
}

/**
 * The truncation rank of `trainFit` by the one-standard-error rule on held-out situations: the smallest
 * k whose held-out NLL exceeds the best truncation's by at most one standard error of the PAIRED
 * per-situation differences (the candidates are scored on the same situations, so the paired error is
 * the relevant one and is much smaller than either NLL's own).
 */
function chooseRank(trainFit: LatentLogitFit, holdout: CompiledPanel): { rank: number; nll: number[] } {
  const losses: Float64Array[] = [];
  const nll: number[] = [];
  let best = 0;
  for (let k = 0; k <= trainFit.rank; k++) {
    const l = situationNlls(holdout, truncateFit(trainFit, k).B);
    losses.push(l);
    nll.push(l.reduce((a, b) => a + b, 0) / l.length);
    if ((nll[k] as number) < (nll[best] as number)) best = k;
  }
  const ref = losses[best] as Float64Array;
  const m = ref.length;
  for (let k = 0; k < best; k++) {
    const l = losses[k] as Float64Array;
    let mean = 0;
    for (let s = 0; s < m; s++) mean += (l[s] as number) - (ref[s] as number);
    mean /= m;
    let ss = 0;
    for (let s = 0; s < m; s++) ss += ((l[s] as number) - (ref[s] as number) - mean) ** 2;
    const se = m > 1 ? Math.sqrt(ss / (m - 1) / m) : 0;
    if (mean <= se) return { rank: k, nll };
  }
  return { rank: best, nll };
}

/**
 * Warm-started λ path on a per-individual training split, selected by held-out likelihood. The grid
 * is walked λ2-major from the largest penalties (whose solution is 0) down, each fit starting from
 * its predecessor; each new λ2 row starts from the previous row's first fit.
 */
export function fitLatentLogitPath(panel: Panel | CompiledPanel, options: PathOptions = {}): PathResult {
  const started = performance.now();
  const p = asCompiled(panel);
  const r1 = options.lambda1Ratios ?? geometricGrid(6, 0.01);
  const r2 = options.lambda2Ratios ?? geometricGrid(6, 0.01);
  if (r1.length === 0 || r2.length === 0)
    throw new OrchardError('INVALID_ARGUMENT', 'λ ratio grids must not be empty');
  for (const r of [...r1, ...r2]) checkLambda('λ ratio', r);
  const { train, holdout } = splitHoldout(p, options.holdoutFraction ?? 0.25, options.seed ?? 0);
  const lmax = lambdaMax(train);
  const points: PathPoint[] = [];
  let best: { point: PathPoint; fit: LatentLogitFit } | undefined;
  let rowStart: LatentLogitFit | undefined;
  const sorted1 = [...r1].sort((a, b) => b - a);
  const sorted2 = [...r2].sort((a, b) => b - a);
  for (const ratio2 of sorted2) {
    let prev = rowStart;
    for (const [j, ratio1] of sorted1.entries()) {
      const fit = fitLatentLogit(train, {
        ...options.solver,
        lambda1: ratio1 * lmax.lambda1,
        lambda2: ratio2 * lmax.lambda2,
        ...(prev === undefined ? {} : { init: { w: prev.w, U: prev.U } }),
      });
      if (j === 0) rowStart = fit;
      prev = fit;
      const point: PathPoint = {
        lambda1: fit.lambda1,
        lambda2: fit.lambda2,
        lambda1Ratio: ratio1,
        lambda2Ratio: ratio2,
        trainNll: fit.nll,
        heldOutNll: meanNll(holdout, fit.B),
        rank: fit.rank,
        nonzeros: fit.nonzeros,
        iterations: fit.certificate.iterations,
        converged: fit.certificate.converged,
      };
      points.push(point);
      options.onPoint?.(point);
      if (best === undefined || point.heldOutNll < best.point.heldOutNll) best = { point, fit };
    }
  }
  if (best === undefined) throw new OrchardError('INVALID_STATE', 'empty λ path');
  const fit =
    options.refit === false
      ? best.fit
      : fitLatentLogit(p, {
          ...options.solver,
          lambda1: best.point.lambda1,
          lambda2: best.point.lambda2,
          init: { w: best.fit.w, U: best.fit.U },
        });
  let rankSelection: RankSelection | undefined;
  if (options.selectRank !== false) {
    const chosen = chooseRank(best.fit, holdout);
    rankSelection = { rank: chosen.rank, heldOutNll: chosen.nll, ...truncateFit(fit, chosen.rank) };
  }
  return {
    lambdaMax: lmax,
    points,
    best: best.point,
    fit,
    ...(rankSelection === undefined ? {} : { rankSelection }),
    seconds: (performance.now() - started) / 1000,
  };
}
