/**
 * The multinomial-logit likelihood shared by every estimator. Coefficients are an n × d matrix B
 * (row-major, row i = β_i); utilities are x_row · β_i and the probability of a situation's chosen
 * alternative is its softmax share. The objective is the MEAN negative log-likelihood over all
 * situations, so penalty levels do not scale with the amount of data.
 */
import type { CompiledPanel } from './data.ts';

/**
 * Sum over individual i's situations of −log P(chosen | β), with β at `beta[offset..offset+d)`.
 * If `grad` is given, adds Σ_s X_s^T (p_s − e_chosen) into grad[gradOffset..gradOffset+d), scaled by
 * `gradScale`. `util` is scratch space of at least the largest situation size.
 */
export function individualNll(
  panel: CompiledPanel,
  i: number,
  beta: ArrayLike<number>,
  offset: number,
  grad?: Float64Array,
  gradOffset = 0,
  gradScale = 1,
): number {
  const d = panel.d;
  const x = panel.x[i] as Float64Array;
  const altStart = panel.altStart[i] as Int32Array;
  const chosen = panel.chosen[i] as Int32Array;
  let total = 0;
  for (let s = 0; s < chosen.length; s++) {
    const a = altStart[s] as number;
    const b = altStart[s + 1] as number;
    let max = -Infinity;
    // Utilities are recomputed in the gradient pass below instead of stored: situations are small.
    for (let r = a; r < b; r++) {
      let u = 0;
      for (let k = 0; k < d; k++) u += (x[r * d + k] as number) * (beta[offset + k] as number);
      if (u > max) max = u;
    }
    let sum = 0;
    for (let r = a; r < b; r++) {
      let u = 0;
      for (let k = 0; k < d; k++) u += (x[r * d + k] as number) * (beta[offset + k] as number);
      sum += Math.exp(u - max);
    }
    const c = chosen[s] as number;
    let uc = 0;
    for (let k = 0; k < d; k++) uc += (x[c * d + k] as number) * (beta[offset + k] as number);
    total += max + Math.log(sum) - uc;
    if (grad !== undefined) {
      for (let r = a; r < b; r++) {
        let u = 0;
        for (let k = 0; k < d; k++) u += (x[r * d + k] as number) * (beta[offset + k] as number);
        const p = Math.exp(u - max) / sum;
        const coef = gradScale * (r === c ? p - 1 : p);
        if (coef === 0) continue;
        for (let k = 0; k < d; k++)
          grad[gradOffset + k] = (grad[gradOffset + k] as number) + coef * (x[r * d + k] as number);
      }
    }
  }
  return total;
}

/**
 * Mean NLL over all situations at coefficients B (n × d). If `gradB` is given it is overwritten with
 * ∂/∂B of the mean NLL (row i = gradient for β_i).
 */
export function meanNll(panel: CompiledPanel, B: ArrayLike<number>, gradB?: Float64Array): number {
  const scale = 1 / panel.situations;
  if (gradB !== undefined) gradB.fill(0);
  let total = 0;
  for (let i = 0; i < panel.n; i++)
    total += individualNll(panel, i, B, i * panel.d, gradB, i * panel.d, scale);
  return total * scale;
}

/** Mean log-likelihood per situation (higher is better): the held-out score of every method. */
export function meanLogLik(panel: CompiledPanel, B: ArrayLike<number>): number {
  return -meanNll(panel, B);
}

/** B with every row equal to w + U[i]: the coefficients of the latent-effect model. */
export function composeCoefficients(w: Float64Array, U: Float64Array, n: number): Float64Array {
  const d = w.length;
  const B = new Float64Array(n * d);
  for (let i = 0; i < n; i++)
    for (let k = 0; k < d; k++) B[i * d + k] = (w[k] as number) + (U[i * d + k] as number);
  return B;
}

/** ‖A − B‖_F / ‖B‖_F. */
export function relativeError(estimate: ArrayLike<number>, truth: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let k = 0; k < truth.length; k++) {
    const t = truth[k] as number;
    const diff = (estimate[k] as number) - t;
    num += diff * diff;
    den += t * t;
  }
  return Math.sqrt(num / den);
}
