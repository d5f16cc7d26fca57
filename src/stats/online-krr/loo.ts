/**
 * Closed-form leave-one-out error of KRR and its gradient in log-hyperparameter space.
 *
 * With A = K + λI, M = A⁻¹ and α = M y, the LOO residual of point i is e_i = α_i / M_ii, and
 * L = (1/n) Σ e_i². Differentiating (dM = −M dA M, dα = −M dA α):
 *   dL = (2/n) Σ_i [ a_i dα_i − c_i dM_ii ],   a_i = e_i / M_ii,  c_i = e_i² / M_ii
 *      = (2/n) [ −(M a)ᵀ dA α + Σ_i c_i m_iᵀ dA m_i ]                 (m_i = column i of M)
 * For log λ, dA = λ I:  dL = (2/n) λ [ −(M a)ᵀ α + Σ_i c_i ‖m_i‖² ]        — O(n²).
 * For log γ, dA = D = γ ∂K/∂γ: dL = (2/n) [ −(M a)ᵀ D α + Σ_i c_i m_iᵀ D m_i ] — the second sum is
 * O(n³) in full; a subset S of rows gives an unbiased estimate (n/|S|) Σ_{i∈S} at O(|S| n²).
 * We return the gradient of log L, which is scale-free, so one step size suits every series.
 */
import { OrchardError } from '../../core/errors.ts';
import type { KrrWindow } from './window.ts';

export interface LooValue {
  readonly residuals: Float64Array;
  readonly mse: number;
  readonly alpha: Float64Array;
}

export function looResiduals(window: KrrWindow): LooValue {
  const n = window.size;
  if (n < 2) throw new OrchardError('INVALID_STATE', 'leave-one-out needs at least 2 points');
  const alpha = window.alpha();
  const residuals = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = (alpha[i] as number) / window.inverseAt(i, i);
    residuals[i] = e;
    sum += e * e;
  }
  window.meter.add(3 * n);
  return { residuals, mse: sum / n, alpha };
}

export interface LooGradient {
  readonly mse: number;
  /** ∂ log L / ∂ log λ */
  readonly dLogLambda: number;
  /** ∂ log L / ∂ log γ (exact when rows is null, else an unbiased row-subset estimate of the numerator) */
  readonly dLogGamma: number;
}

/** Gradient of log LOO-MSE; `rows` (indices into the window) selects the subset estimate for γ. */
export function looGradient(window: KrrWindow, rows: readonly number[] | null = null): LooGradient {
  const n = window.size;
  const { residuals, mse, alpha } = looResiduals(window);
  const meter = window.meter;
  const a = new Float64Array(n);
  const cw = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const mii = window.inverseAt(i, i);
    const e = residuals[i] as number;
    a[i] = e / mii;
    cw[i] = (e * e) / mii;
  }
  meter.add(3 * n);
  const ma = new Float64Array(n);
  let lambdaSum = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    let sq = 0;
    for (let j = 0; j < n; j++) {
      const m = window.inverseAt(i, j);
      s += m * (a[j] as number);
      sq += m * m;
    }
    ma[i] = s;
    lambdaSum += (cw[i] as number) * sq - s * (alpha[i] as number);
  }
  meter.add(4 * n * n + 4 * n);
  const dLambda = ((2 / n) * window.lambda * lambdaSum) / mse;

  const d = window.logGammaDerivative();
  // −(M a)ᵀ D α
  let first = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += (d[i * n + j] as number) * (alpha[j] as number);
    first -= (ma[i] as number) * s;
  }
  meter.add(2 * n * n + 2 * n);
  const chosen = rows ?? Array.from({ length: n }, (_, i) => i);
  if (chosen.length === 0) throw new OrchardError('INVALID_STATE', 'empty row subset for the γ gradient');
  let second = 0;
  const dm = new Float64Array(n);
  for (const i of chosen) {
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (d[r * n + j] as number) * window.inverseAt(j, i);
      dm[r] = s;
    }
    let q = 0;
    for (let r = 0; r < n; r++) q += window.inverseAt(r, i) * (dm[r] as number);
    second += (cw[i] as number) * q;
  }
  meter.add(chosen.length * (2 * n * n + 2 * n + 2));
  second *= n / chosen.length;
  const dGamma = ((2 / n) * (first + second)) / mse;
  return { mse, dLogLambda: dLambda, dLogGamma: dGamma };
}
