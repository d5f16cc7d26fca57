/**
 * Deterministic compute accounting. Every method charges the floating-point work it performs here
 * (1 multiply or add = 1 flop; dense factorizations at their textbook counts), so methods are compared
 * by counted work rather than by noisy wall time on a shared machine.
 */
export class ComputeMeter {
  /** Total floating-point work, including kernel evaluations. */
  flops = 0;
  /** Pair statistics computed from feature vectors (d-dimensional work each). */
  kernelEvals = 0;
  /** exp/pow transforms of stored pair statistics (a γ change re-uses the statistics). */
  kernelTransforms = 0;
  /** Direct re-factorizations of K + λI (drift, hyperparameter change, retune). */
  refreshes = 0;

  add(flops: number): void {
    this.flops += flops;
  }

  snapshot(): ComputeTotals {
    return {
      flops: this.flops,
      kernelEvals: this.kernelEvals,
      kernelTransforms: this.kernelTransforms,
      refreshes: this.refreshes,
    };
  }
}

export interface ComputeTotals {
  readonly flops: number;
  readonly kernelEvals: number;
  readonly kernelTransforms: number;
  readonly refreshes: number;
}

/** Flops of a Cholesky factorization of an n×n matrix. */
export function choleskyFlops(n: number): number {
  return (n * n * n) / 3;
}

/**
 * Cholesky of the symmetric positive definite n×n matrix `a` (row-major, row stride `stride`) into the
 * lower triangle of `l`. Returns false when a pivot is not positive (the matrix is not numerically PD).
 */
export function choleskyInPlace(a: Float64Array, l: Float64Array, n: number, stride: number): boolean {
  for (let j = 0; j < n; j++) {
    let diag = a[j * stride + j] as number;
    for (let k = 0; k < j; k++) {
      const v = l[j * stride + k] as number;
      diag -= v * v;
    }
    if (!(diag > 0)) return false;
    const ljj = Math.sqrt(diag);
    l[j * stride + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * stride + j] as number;
      for (let k = 0; k < j; k++) s -= (l[i * stride + k] as number) * (l[j * stride + k] as number);
      l[i * stride + j] = s / ljj;
    }
  }
  return true;
}

/** Solves (L Lᵀ) x = b in place of b. */
export function choleskySolve(l: Float64Array, n: number, stride: number, b: Float64Array): void {
  for (let i = 0; i < n; i++) {
    let s = b[i] as number;
    for (let k = 0; k < i; k++) s -= (l[i * stride + k] as number) * (b[k] as number);
    b[i] = s / (l[i * stride + i] as number);
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i] as number;
    for (let k = i + 1; k < n; k++) s -= (l[k * stride + i] as number) * (b[k] as number);
    b[i] = s / (l[i * stride + i] as number);
  }
}

/**
 * Inverse of L Lᵀ into `out` (full symmetric): invert L (n³/3 flops), then out = L⁻ᵀ L⁻¹ (n³/3).
 * `l` is overwritten with L⁻¹.
 */
export function inverseFromCholesky(l: Float64Array, n: number, stride: number, out: Float64Array): void {
  // Lower-triangular inverse, column by column, in place.
  for (let j = 0; j < n; j++) {
    const ljj = 1 / (l[j * stride + j] as number);
    l[j * stride + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= (l[i * stride + k] as number) * (l[k * stride + j] as number);
      l[i * stride + j] = s / (l[i * stride + i] as number);
    }
  }
  // out_ij = Σ_{k ≥ max(i,j)} Linv_ki Linv_kj
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += (l[k * stride + i] as number) * (l[k * stride + j] as number);
      out[i * stride + j] = s;
      out[j * stride + i] = s;
    }
  }
}
