/**
 * Proximal operators of the two penalties: soft-thresholding is the prox of t‖·‖₁, singular-value
 * thresholding (shrink every singular value by t, clip at 0) is the prox of t‖·‖_* (nuclear norm).
 */
import { Matrix, SVD } from 'ml-matrix';

/** argmin_z ½‖z − v‖² + t‖z‖₁, elementwise sign(v)·max(|v| − t, 0). */
export function softThreshold(v: ArrayLike<number>, t: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let k = 0; k < v.length; k++) {
    const x = v[k] as number;
    out[k] = x > t ? x - t : x < -t ? x + t : 0;
  }
  return out;
}

export interface SvtResult {
  /** The thresholded matrix, rows × cols row-major. */
  readonly value: Float64Array;
  /** Singular values of the result (descending, only the nonzero ones). */
  readonly singularValues: number[];
  readonly rank: number;
}

function toMatrix(v: ArrayLike<number>, rows: number, cols: number): Matrix {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, v[i * cols + j] as number);
  return m;
}

/** argmin_Z ½‖Z − V‖_F² + t‖Z‖_* for V (rows × cols, row-major). */
export function singularValueThreshold(
  v: ArrayLike<number>,
  rows: number,
  cols: number,
  t: number,
): SvtResult {
  const svd = new SVD(toMatrix(v, rows, cols), { autoTranspose: true });
  const sigma = svd.diagonal;
  const left = svd.leftSingularVectors;
  const right = svd.rightSingularVectors;
  const value = new Float64Array(rows * cols);
  const kept: number[] = [];
  for (let q = 0; q < sigma.length; q++) {
    const shrunk = (sigma[q] as number) - t;
    if (shrunk <= 0) continue;
    kept.push(shrunk);
    for (let i = 0; i < rows; i++) {
      const li = left.get(i, q) * shrunk;
      if (li === 0) continue;
      for (let j = 0; j < cols; j++)
        value[i * cols + j] = (value[i * cols + j] as number) + li * right.get(j, q);
    }
  }
  kept.sort((a, b) => b - a);
  return { value, singularValues: kept, rank: kept.length };
}

/** The best rank-k approximation of V (rows × cols, row-major): its top k singular triplets, unshrunk. */
export function truncateRank(v: ArrayLike<number>, rows: number, cols: number, k: number): Float64Array {
  const svd = new SVD(toMatrix(v, rows, cols), { autoTranspose: true });
  const order = svd.diagonal.map((s, q) => ({ s, q })).sort((a, b) => b.s - a.s);
  const left = svd.leftSingularVectors;
  const right = svd.rightSingularVectors;
  const value = new Float64Array(rows * cols);
  for (const { s, q } of order.slice(0, Math.max(0, k))) {
    if (!(s > 0)) continue;
    for (let i = 0; i < rows; i++) {
      const li = left.get(i, q) * s;
      if (li === 0) continue;
      for (let j = 0; j < cols; j++)
        value[i * cols + j] = (value[i * cols + j] as number) + li * right.get(j, q);
    }
  }
  return value;
}

/** Largest singular value ‖V‖₂ of V (rows × cols, row-major). */
export function spectralNorm(v: ArrayLike<number>, rows: number, cols: number): number {
  const svd = new SVD(toMatrix(v, rows, cols), {
    autoTranspose: true,
    computeLeftSingularVectors: false,
    computeRightSingularVectors: false,
  });
  return Math.max(0, ...svd.diagonal);
}

/** Σ singular values of V (rows × cols, row-major). */
export function nuclearNorm(v: ArrayLike<number>, rows: number, cols: number): number {
  const svd = new SVD(toMatrix(v, rows, cols), {
    autoTranspose: true,
    computeLeftSingularVectors: false,
    computeRightSingularVectors: false,
  });
  return svd.diagonal.reduce((a, b) => a + Math.max(0, b), 0);
}
