/**
 * Loss heads. Each returns the SUM over the m examples of the per-example loss (callers divide by m)
 * and, when `dOut` is given, writes gradScale · ∂(per-example loss)/∂output into it (callers pass
 * gradScale = 1/m to get the gradient of the mean).
 */
import { OrchardError } from '../core/errors.ts';

function badLabel(i: number, label: number, numClasses: number): OrchardError {
  return new OrchardError('DATA_INVALID', `label ${label} of example ${i} is outside [0, ${numClasses})`);
}

/**
 * Softmax cross-entropy with integer labels, via log-sum-exp with the row maximum subtracted so that
 * logits of any magnitude give a finite loss: CE_i = log Σ_j exp(z_ij − max_i) − (z_iy − max_i).
 */
export function softmaxCrossEntropy(
  logits: Float32Array,
  labels: Int32Array,
  m: number,
  c: number,
  dOut: Float32Array | null,
  gradScale: number,
): number {
  let total = 0;
  for (let i = 0; i < m; i++) {
    const o = i * c;
    const y = labels[i] as number;
    if (!(y >= 0 && y < c)) throw badLabel(i, y, c);
    let max = logits[o] as number;
    for (let j = 1; j < c; j++) {
      const z = logits[o + j] as number;
      if (z > max) max = z;
    }
    let sum = 0;
    if (dOut !== null) {
      // Keep the exponentials in dOut so each is computed once.
      for (let j = 0; j < c; j++) {
        const e = Math.exp((logits[o + j] as number) - max);
        dOut[o + j] = e;
        sum += e;
      }
      const inv = gradScale / sum;
      for (let j = 0; j < c; j++) dOut[o + j] = (dOut[o + j] as number) * inv;
      dOut[o + y] = (dOut[o + y] as number) - gradScale;
    } else {
      for (let j = 0; j < c; j++) sum += Math.exp((logits[o + j] as number) - max);
    }
    total += Math.log(sum) - ((logits[o + y] as number) - max);
  }
  return total;
}

/**
 * Binary logistic loss on one logit per example with labels in {0, 1}:
 * ℓ = log(1 + e^z) − y·z, computed as max(z, 0) − y·z + log1p(e^{−|z|}) so it never overflows.
 */
export function binaryLogistic(
  logits: Float32Array,
  labels: Int32Array,
  m: number,
  dOut: Float32Array | null,
  gradScale: number,
): number {
  let total = 0;
  for (let i = 0; i < m; i++) {
    const y = labels[i] as number;
    if (y !== 0 && y !== 1) throw badLabel(i, y, 2);
    const z = logits[i] as number;
    const e = Math.exp(-Math.abs(z));
    total += Math.max(z, 0) - y * z + Math.log1p(e);
    if (dOut !== null) {
      // σ(z) without overflow: for z ≥ 0, 1/(1+e^{−z}); for z < 0, e^{z}/(1+e^{z}).
      const sigma = z >= 0 ? 1 / (1 + e) : e / (1 + e);
      dOut[i] = (sigma - y) * gradScale;
    }
  }
  return total;
}

/** Mean squared error per example (mean over its c outputs), summed over the m examples. */
export function meanSquaredError(
  outputs: Float32Array,
  targets: Float32Array,
  m: number,
  c: number,
  dOut: Float32Array | null,
  gradScale: number,
): number {
  let total = 0;
  const g = (2 / c) * gradScale;
  for (let t = 0; t < m * c; t++) {
    const d = (outputs[t] as number) - (targets[t] as number);
    total += d * d;
    if (dOut !== null) dOut[t] = g * d;
  }
  return total / c;
}
