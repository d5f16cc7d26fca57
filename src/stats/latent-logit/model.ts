/**
 * The multinomial-logit likelihood shared by every estimator. Coefficients are an n × d matrix B
 * (row-major, row i = β_i); utilities are x_row · β_i and the probability of a situation's chosen
 * alternative is its softmax share. The objective is the MEAN negative log-likelihood over all
 * situations, so penalty levels do not scale with the amount of data.
 */
import type { CompiledPanel } from './data.ts';

/** Utilities of the rows being evaluated; reused across calls (single-threaded, never re-entered). */
let scratch = new Float64Array(64);

/**
 * Sum over individual i's situations of −log P(chosen | β), with β at `beta[offset..offset+d)`.
 * If `grad` is given, adds Σ_s X_s^T (p_s − e_chosen) into grad[gradOffset..gradOffset+d), scaled by
 * `gradScale`.
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
  const rows = altStart[chosen.length] as number;
  if (scratch.length < rows) scratch = new Float64Array(Math.max(rows, 2 * scratch.length));
  const util = scratch;
  for (let r = 0; r < rows; r++) {
    let u = 0;
    const base = r * d;
    for (let k = 0; k < d; k++) u += (x[base + k] as number) * (beta[offset + k] as number);
    util[r] = u;
  }
  let total = 0;
  for (let s = 0; s < chosen.length; s++) {
    const a = altStart[s] as number;
    const b = altStart[s + 1] as number;
    let max = -Infinity;
    for (let r = a; r < b; r++) if ((util[r] as number) > max) max = util[r] as number;
    let sum = 0;
    for (let r = a; r < b; r++) sum += Math.exp((util[r] as number) - max);
    const c = chosen[s] as number;
    total += max + Math.log(sum) - (util[c] as number);
    if (grad === undefined) continue;
    for (let r = a; r < b; r++) {
      const p = Math.exp((util[r] as number) - max) / sum;
      const coef = gradScale * (r === c ? p - 1 : p);
      if (coef === 0) continue;
      const base = r * d;
      for (let k = 0; k < d; k++)
        grad[gradOffset + k] = (grad[gradOffset + k] as number) + coef * (x[base + k] as number);
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

/** −log P(chosen | β_i) of every situation, individual by individual in panel order. */
export function situationNlls(panel: CompiledPanel, B: ArrayLike<number>): Float64Array {
  const out = new Float64Array(panel.situations);
  let k = 0;
  for (let i = 0; i < panel.n; i++) {
    const situations = (panel.chosen[i] as Int32Array).length;
    for (let s = 0; s < situations; s++)
      out[k++] = individualNll(sliceSituation(panel, i, s), 0, B, i * panel.d);
  }
  return out;
}

/** A one-individual, one-situation view of situation s of individual i (no copying of attributes). */
export function sliceSituation(panel: CompiledPanel, i: number, s: number): CompiledPanel {
  const d = panel.d;
  const altStart = panel.altStart[i] as Int32Array;
  const a = altStart[s] as number;
  const b = altStart[s + 1] as number;
  const x = (panel.x[i] as Float64Array).subarray(a * d, b * d);
  const chosen = Int32Array.of(((panel.chosen[i] as Int32Array)[s] as number) - a);
  return {
    d,
    n: 1,
    ids: [panel.ids[i] ?? ''],
    x: [x],
    altStart: [Int32Array.of(0, b - a)],
    chosen: [chosen],
    situations: 1,
  };
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
