/**
 * The usual alternatives to the latent-effect model, in the same terms (an n × d coefficient matrix B):
 * a pooled logit (one β for everyone: the λ2 → ∞ limit), a ridge logit per individual, and a mixed logit
 * with independent normal random coefficients fitted by simulated maximum likelihood on Halton draws.
 */
import { CholeskyDecomposition, Matrix } from 'ml-matrix';
import { OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { type CompiledPanel, compilePanel, type Panel } from './data.ts';
import { haltonNormalDraws } from './halton.ts';
import { individualNll, sliceSituation } from './model.ts';

function asCompiled(panel: Panel | CompiledPanel): CompiledPanel {
  return 'kind' in panel ? compilePanel(panel) : panel;
}

/**
 * Adds, for individual i at coefficients beta, the NLL gradient into g and the Hessian
 * Σ_s (Σ_r p_r x_r x_rᵀ − x̄ x̄ᵀ) into H (d × d row-major); returns the NLL.
 */
function accumulateNewton(
  panel: CompiledPanel,
  i: number,
  beta: Float64Array,
  g: Float64Array,
  H: Float64Array,
): number {
  const d = panel.d;
  const x = panel.x[i] as Float64Array;
  const altStart = panel.altStart[i] as Int32Array;
  const chosen = panel.chosen[i] as Int32Array;
  const nll = individualNll(panel, i, beta, 0, g, 0, 1);
  const mean = new Float64Array(d);
  for (let s = 0; s < chosen.length; s++) {
    const a = altStart[s] as number;
    const b = altStart[s + 1] as number;
    const util = new Float64Array(b - a);
    let max = -Infinity;
    for (let r = a; r < b; r++) {
      let u = 0;
      for (let k = 0; k < d; k++) u += (x[r * d + k] as number) * (beta[k] as number);
      util[r - a] = u;
      max = Math.max(max, u);
    }
    let sum = 0;
    for (let r = 0; r < b - a; r++) {
      util[r] = Math.exp((util[r] as number) - max);
      sum += util[r] as number;
    }
    mean.fill(0);
    for (let r = a; r < b; r++) {
      const p = (util[r - a] as number) / sum;
      for (let k = 0; k < d; k++) {
        const xk = x[r * d + k] as number;
        mean[k] = (mean[k] as number) + p * xk;
        const pxk = p * xk;
        for (let l = 0; l < d; l++) H[k * d + l] = (H[k * d + l] as number) + pxk * (x[r * d + l] as number);
      }
    }
    for (let k = 0; k < d; k++) {
      for (let l = 0; l < d; l++)
        H[k * d + l] = (H[k * d + l] as number) - (mean[k] as number) * (mean[l] as number);
    }
  }
  return nll;
}

/**
 * Newton's method with backtracking for Σ_{i ∈ members} NLL_i(β) + (ridge / 2)‖β‖² (sum scale: the ridge
 * is a N(0, 1/ridge) prior on each coefficient). Strictly convex for ridge > 0, so the start only
 * changes the path, not the answer.
 */
export function fitRidgeLogit(
  panel: CompiledPanel,
  members: readonly number[],
  ridge: number,
  init?: ArrayLike<number>,
): { beta: Float64Array; objective: number; iterations: number } {
  const d = panel.d;
  if (!(ridge > 0) || !Number.isFinite(ridge))
    throw new OrchardError('INVALID_ARGUMENT', `ridge must be positive and finite, got ${ridge}`);
  const beta = init === undefined ? new Float64Array(d) : Float64Array.from(init);
  const value = (b: Float64Array): number => {
    let f = 0;
    for (const i of members) f += individualNll(panel, i, b, 0);
    for (const v of b) f += 0.5 * ridge * v * v;
    return f;
  };
  let f = value(beta);
  let iterations = 0;
  for (; iterations < 100; iterations++) {
    const g = new Float64Array(d);
    const H = new Float64Array(d * d);
    for (const i of members) accumulateNewton(panel, i, beta, g, H);
    for (let k = 0; k < d; k++) {
      g[k] = (g[k] as number) + ridge * (beta[k] as number);
      H[k * d + k] = (H[k * d + k] as number) + ridge;
    }
    // Rounding leaves H a hair off symmetric, which ml-matrix's Cholesky refuses: use the upper triangle.
    const rows = Array.from({ length: d }, (_, k) =>
      Array.from({ length: d }, (_, l) => H[Math.min(k, l) * d + Math.max(k, l)] as number),
    );
    const step = new CholeskyDecomposition(new Matrix(rows)).solve(Matrix.columnVector(Array.from(g)));
    let decrement = 0;
    for (let k = 0; k < d; k++) decrement += (g[k] as number) * step.get(k, 0);
    // Quadratic convergence makes a tight stop cheap: one more step takes the gradient to rounding level.
    if (decrement / 2 < 1e-18 * Math.max(1, Math.abs(f))) break;
    let t = 1;
    const trial = new Float64Array(d);
    for (let back = 0; back < 50; back++) {
      for (let k = 0; k < d; k++) trial[k] = (beta[k] as number) - t * step.get(k, 0);
      const ft = value(trial);
      if (ft <= f - 0.25 * t * decrement) {
        f = ft;
        beta.set(trial);
        break;
      }
      t /= 2;
    }
    if (t < 2 ** -49) break;
  }
  return { beta, objective: f, iterations };
}

export interface BaselineFit {
  readonly method: string;
  /** n × d coefficients, row i = β_i. */
  readonly B: Float64Array;
  readonly seconds: number;
}

export interface PooledFit extends BaselineFit {
  readonly method: 'pooled';
  readonly beta: Float64Array;
}

/** One β for all individuals (U = 0), with a tiny ridge so separable data still has a finite answer. */
export function fitPooledLogit(
  panel: Panel | CompiledPanel,
  options: { ridge?: number; init?: ArrayLike<number> } = {},
): PooledFit {
  const started = performance.now();
  const p = asCompiled(panel);
  const members = Array.from({ length: p.n }, (_, i) => i);
  const { beta } = fitRidgeLogit(p, members, options.ridge ?? 1e-6, options.init);
  const B = new Float64Array(p.n * p.d);
  for (let i = 0; i < p.n; i++) B.set(beta, i * p.d);
  return { method: 'pooled', beta, B, seconds: (performance.now() - started) / 1000 };
}

/** A separate ridge logit per individual (ridge needed: T_i is often too small for the MLE to exist). */
export function fitPerIndividualLogit(
  panel: Panel | CompiledPanel,
  options: { ridge?: number; init?: ArrayLike<number> } = {},
): BaselineFit {
  const started = performance.now();
  const p = asCompiled(panel);
  const B = new Float64Array(p.n * p.d);
  for (let i = 0; i < p.n; i++) {
    const init =
      options.init === undefined ? undefined : Array.from(options.init).slice(i * p.d, (i + 1) * p.d);
    B.set(fitRidgeLogit(p, [i], options.ridge ?? 1, init).beta, i * p.d);
  }
  return { method: 'per-individual', B, seconds: (performance.now() - started) / 1000 };
}

export interface MixedLogitOptions {
  /** Halton draws per individual (default 100). */
  readonly draws?: number;
  /** Random starting points (default 3); the best simulated likelihood wins. */
  readonly restarts?: number;
  readonly seed?: number;
  /** BFGS iteration cap per start (default 200). */
  readonly maxIter?: number;
  /** Stop when ‖∇‖_∞ falls below this (default 1e-6). */
  readonly gradTol?: number;
}

export interface MixedLogitStart {
  readonly mean: Float64Array;
  readonly sd: Float64Array;
  /** Mean simulated NLL per situation at the end of this start. */
  readonly nll: number;
  readonly iterations: number;
  /** The gradient tolerance was met (not stopped by the iteration cap or a failed line search). */
  readonly converged: boolean;
}

export interface MixedLogitFit extends BaselineFit {
  readonly method: 'mixed';
  readonly mean: Float64Array;
  readonly sd: Float64Array;
  readonly nll: number;
  readonly starts: readonly MixedLogitStart[];
  readonly draws: number;
  /** Standard-normal draws, n × R × d. */
  readonly z: Float64Array;
  /** Posterior weight of each draw given the individual's data, n × R (rows sum to 1). */
  readonly weights: Float64Array;
}

/**
 * Simulated mean NLL of the mixed logit at θ = (μ, log σ) and its gradient. Individual i's likelihood is
 * the average over its R draws of Π_s P(chosen | β = μ + σ ⊙ z_ir); `weights` receives the normalized
 * per-draw likelihoods (the posterior over draws).
 */
function mixedObjective(
  panel: CompiledPanel,
  z: Float64Array,
  R: number,
  theta: Float64Array,
  grad: Float64Array | undefined,
  weights?: Float64Array,
): number {
  const d = panel.d;
  const beta = new Float64Array(R * d);
  const gBeta = new Float64Array(R * d);
  const logLik = new Float64Array(R);
  if (grad !== undefined) grad.fill(0);
  let total = 0;
  for (let i = 0; i < panel.n; i++) {
    for (let r = 0; r < R; r++) {
      for (let k = 0; k < d; k++) {
        beta[r * d + k] =
          (theta[k] as number) + Math.exp(theta[d + k] as number) * (z[(i * R + r) * d + k] as number);
      }
    }
    if (grad !== undefined) gBeta.fill(0);
    let max = -Infinity;
    for (let r = 0; r < R; r++) {
      const ll = -individualNll(panel, i, beta, r * d, grad === undefined ? undefined : gBeta, r * d, 1);
      logLik[r] = ll;
      max = Math.max(max, ll);
    }
    let sum = 0;
    for (let r = 0; r < R; r++) sum += Math.exp((logLik[r] as number) - max);
    total -= max + Math.log(sum / R);
    if (grad === undefined && weights === undefined) continue;
    for (let r = 0; r < R; r++) {
      const omega = Math.exp((logLik[r] as number) - max) / sum;
      if (weights !== undefined) weights[i * R + r] = omega;
      if (grad === undefined) continue;
      for (let k = 0; k < d; k++) {
        const g = omega * (gBeta[r * d + k] as number);
        grad[k] = (grad[k] as number) + g;
        grad[d + k] =
          (grad[d + k] as number) + g * Math.exp(theta[d + k] as number) * (z[(i * R + r) * d + k] as number);
      }
    }
  }
  const scale = 1 / panel.situations;
  if (grad !== undefined) for (let k = 0; k < grad.length; k++) grad[k] = (grad[k] as number) * scale;
  return total * scale;
}

/** Exposed for gradient checks: the simulated objective and gradient at θ = (μ, log σ). */
export function mixedLogitObjective(
  panel: CompiledPanel,
  draws: number,
  theta: Float64Array,
  grad?: Float64Array,
): number {
  return mixedObjective(panel, haltonNormalDraws(panel.n, draws, panel.d), draws, theta, grad);
}

/** BFGS with Armijo backtracking from θ0; returns the final θ, value and iteration count. */
function bfgs(
  f: (theta: Float64Array, grad: Float64Array) => number,
  theta0: Float64Array,
  maxIter: number,
  gradTol: number,
): { theta: Float64Array; value: number; iterations: number; gradMax: number } {
  const m = theta0.length;
  let theta = Float64Array.from(theta0);
  let g = new Float64Array(m);
  let value = f(theta, g);
  const Hinv = new Float64Array(m * m);
  for (let k = 0; k < m; k++) Hinv[k * m + k] = 1;
  let iterations = 0;
  for (; iterations < maxIter; iterations++) {
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    if (gmax < gradTol) break;
    const dir = new Float64Array(m);
    for (let a = 0; a < m; a++) {
      let s = 0;
      for (let b = 0; b < m; b++) s -= (Hinv[a * m + b] as number) * (g[b] as number);
      dir[a] = s;
    }
    let slope = 0;
    for (let a = 0; a < m; a++) slope += (dir[a] as number) * (g[a] as number);
    if (slope >= 0) {
      // Not a descent direction (curvature information went stale): reset to steepest descent.
      Hinv.fill(0);
      for (let k = 0; k < m; k++) Hinv[k * m + k] = 1;
      for (let a = 0; a < m; a++) dir[a] = -(g[a] as number);
      slope = 0;
      for (let a = 0; a < m; a++) slope -= (g[a] as number) ** 2;
    }
    let t = 1;
    const next = new Float64Array(m);
    const gNext = new Float64Array(m);
    let vNext = Number.POSITIVE_INFINITY;
    for (let back = 0; back < 40; back++) {
      for (let a = 0; a < m; a++) next[a] = (theta[a] as number) + t * (dir[a] as number);
      vNext = f(next, gNext);
      if (Number.isFinite(vNext) && vNext <= value + 1e-4 * t * slope) break;
      t /= 2;
    }
    if (!(vNext <= value)) break;
    const s = new Float64Array(m);
    const y = new Float64Array(m);
    let sy = 0;
    for (let a = 0; a < m; a++) {
      s[a] = (next[a] as number) - (theta[a] as number);
      y[a] = (gNext[a] as number) - (g[a] as number);
      sy += (s[a] as number) * (y[a] as number);
    }
    const change = value - vNext;
    theta = Float64Array.from(next);
    g = Float64Array.from(gNext);
    value = vNext;
    if (sy > 1e-12) {
      if (iterations === 0) {
        // Scale the initial inverse Hessian to the observed curvature before the first update.
        let yy = 0;
        for (const v of y) yy += v * v;
        for (let k = 0; k < m; k++) Hinv[k * m + k] = sy / yy;
      }
      const Hy = new Float64Array(m);
      for (let a = 0; a < m; a++) {
        let acc = 0;
        for (let b = 0; b < m; b++) acc += (Hinv[a * m + b] as number) * (y[b] as number);
        Hy[a] = acc;
      }
      let yHy = 0;
      for (let a = 0; a < m; a++) yHy += (y[a] as number) * (Hy[a] as number);
      const rhoInv = 1 / sy;
      for (let a = 0; a < m; a++) {
        for (let b = 0; b < m; b++) {
          Hinv[a * m + b] =
            (Hinv[a * m + b] as number) -
            rhoInv * ((Hy[a] as number) * (s[b] as number) + (s[a] as number) * (Hy[b] as number)) +
            (rhoInv * rhoInv * yHy + rhoInv) * (s[a] as number) * (s[b] as number);
        }
      }
    }
    if (change <= 1e-13 * Math.max(1, Math.abs(value))) break;
  }
  let gradMax = 0;
  for (const v of g) gradMax = Math.max(gradMax, Math.abs(v));
  return { theta, value, iterations, gradMax };
}

/**
 * Mixed logit with β_i ~ N(μ, diag(σ²)) by simulated maximum likelihood: Halton draws, BFGS on (μ, log σ),
 * several random starts. The objective is not convex, so starts may end at different optima; all are
 * reported. Individual coefficients are the posterior means E[β_i | data_i] over the draws.
 */
export function fitMixedLogit(panel: Panel | CompiledPanel, options: MixedLogitOptions = {}): MixedLogitFit {
  const started = performance.now();
  const p = asCompiled(panel);
  const d = p.d;
  const R = options.draws ?? 100;
  const restarts = options.restarts ?? 3;
  if (!Number.isInteger(R) || R < 1)
    throw new OrchardError('INVALID_ARGUMENT', `draws must be a positive integer, got ${R}`);
  if (!Number.isInteger(restarts) || restarts < 1)
    throw new OrchardError('INVALID_ARGUMENT', `restarts must be a positive integer, got ${restarts}`);
  const z = haltonNormalDraws(p.n, R, d);
  const rng = new Rng(options.seed ?? 0, 0x6d1);
  const starts: MixedLogitStart[] = [];
  let best: { theta: Float64Array; value: number } | undefined;
  for (let s = 0; s < restarts; s++) {
    const theta0 = new Float64Array(2 * d);
    for (let k = 0; k < d; k++) {
      theta0[k] = rng.normal();
      theta0[d + k] = Math.log(rng.uniform(0.1, 2));
    }
    const run = bfgs(
      (theta, grad) => mixedObjective(p, z, R, theta, grad),
      theta0,
      options.maxIter ?? 200,
      options.gradTol ?? 1e-6,
    );
    starts.push({
      mean: run.theta.slice(0, d),
      sd: run.theta.slice(d).map(Math.exp),
      nll: run.value,
      iterations: run.iterations,
      converged: run.gradMax < (options.gradTol ?? 1e-6),
    });
    if (best === undefined || run.value < best.value) best = { theta: run.theta, value: run.value };
  }
  if (best === undefined) throw new OrchardError('INVALID_STATE', 'no mixed logit start ran');
  const weights = new Float64Array(p.n * R);
  mixedObjective(p, z, R, best.theta, undefined, weights);
  const B = new Float64Array(p.n * d);
  for (let i = 0; i < p.n; i++) {
    for (let r = 0; r < R; r++) {
      const omega = weights[i * R + r] as number;
      for (let k = 0; k < d; k++) {
        const beta =
          (best.theta[k] as number) +
          Math.exp(best.theta[d + k] as number) * (z[(i * R + r) * d + k] as number);
        B[i * d + k] = (B[i * d + k] as number) + omega * beta;
      }
    }
  }
  return {
    method: 'mixed',
    B,
    mean: best.theta.slice(0, d),
    sd: best.theta.slice(d).map(Math.exp),
    nll: best.value,
    starts,
    draws: R,
    z,
    weights,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Held-out mean log-likelihood per situation of a mixed logit: each test situation's probability is
 * averaged over the individual's draws weighted by their posterior given the training data.
 */
export function mixedLogitHeldOutLogLik(fit: MixedLogitFit, test: CompiledPanel): number {
  const d = test.d;
  const R = fit.draws;
  if (test.d !== fit.mean.length || fit.weights.length !== test.n * R) {
    throw new OrchardError(
      'SHAPE_MISMATCH',
      'test panel does not match the fitted mixed logit (individuals or features)',
    );
  }
  const beta = new Float64Array(d);
  let total = 0;
  for (let i = 0; i < test.n; i++) {
    const chosen = test.chosen[i] as Int32Array;
    const perSituation = new Float64Array(chosen.length);
    const situations = Array.from(chosen, (_, s) => sliceSituation(test, i, s));
    for (let r = 0; r < R; r++) {
      const omega = fit.weights[i * R + r] as number;
      if (omega < 1e-300) continue;
      for (let k = 0; k < d; k++)
        beta[k] = (fit.mean[k] as number) + (fit.sd[k] as number) * (fit.z[(i * R + r) * d + k] as number);
      for (let s = 0; s < chosen.length; s++) {
        const one = situations[s] as CompiledPanel;
        perSituation[s] = (perSituation[s] as number) + omega * Math.exp(-individualNll(one, 0, beta, 0));
      }
    }
    for (const v of perSituation) total += Math.log(v);
  }
  return total / test.situations;
}
