/**
 * Hot-loop kernels on flat row-major Float32Arrays. These are the simulator's inner loop, so:
 * no allocation, no closures, monomorphic typed-array access, register blocking (several running sums
 * live in locals so each loaded value is used more than once), and skipping of exact zeros where the
 * data is commonly sparse (ReLU gradients, image backgrounds). Accumulation is in float64 (JS numbers).
 *
 * Offsets (`bOff`, `wOff`, ...) let weights be read straight out of the single flat parameter vector
 * without creating subarray views per call.
 */

/**
 * out[i·n + j] = bias[biasOff + j] + Σ_t a[i·k + t] · b[bOff + j·k + t]
 * (A is m×k, B is n×k, i.e. out = A·Bᵀ + bias). Pass biasOff < 0 for no bias.
 */
export function gemmNT(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  bOff: number,
  bias: Float32Array,
  biasOff: number,
  m: number,
  n: number,
  k: number,
): void {
  const hasBias = biasOff >= 0;
  let i = 0;
  // 4 rows of A × 2 rows of B: 6 loads feed 8 multiply-adds.
  for (; i + 4 <= m; i += 4) {
    const a0 = i * k;
    const a1 = a0 + k;
    const a2 = a1 + k;
    const a3 = a2 + k;
    const o0 = i * n;
    const o1 = o0 + n;
    const o2 = o1 + n;
    const o3 = o2 + n;
    let j = 0;
    for (; j + 2 <= n; j += 2) {
      const b0 = bOff + j * k;
      const b1 = b0 + k;
      let s00 = 0;
      let s01 = 0;
      let s10 = 0;
      let s11 = 0;
      let s20 = 0;
      let s21 = 0;
      let s30 = 0;
      let s31 = 0;
      for (let t = 0; t < k; t++) {
        const w0 = b[b0 + t] as number;
        const w1 = b[b1 + t] as number;
        const x0 = a[a0 + t] as number;
        const x1 = a[a1 + t] as number;
        const x2 = a[a2 + t] as number;
        const x3 = a[a3 + t] as number;
        s00 += x0 * w0;
        s01 += x0 * w1;
        s10 += x1 * w0;
        s11 += x1 * w1;
        s20 += x2 * w0;
        s21 += x2 * w1;
        s30 += x3 * w0;
        s31 += x3 * w1;
      }
      const c0 = hasBias ? (bias[biasOff + j] as number) : 0;
      const c1 = hasBias ? (bias[biasOff + j + 1] as number) : 0;
      out[o0 + j] = s00 + c0;
      out[o0 + j + 1] = s01 + c1;
      out[o1 + j] = s10 + c0;
      out[o1 + j + 1] = s11 + c1;
      out[o2 + j] = s20 + c0;
      out[o2 + j + 1] = s21 + c1;
      out[o3 + j] = s30 + c0;
      out[o3 + j + 1] = s31 + c1;
    }
    for (; j < n; j++) {
      const b0 = bOff + j * k;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let t = 0; t < k; t++) {
        const w = b[b0 + t] as number;
        s0 += (a[a0 + t] as number) * w;
        s1 += (a[a1 + t] as number) * w;
        s2 += (a[a2 + t] as number) * w;
        s3 += (a[a3 + t] as number) * w;
      }
      const c = hasBias ? (bias[biasOff + j] as number) : 0;
      out[o0 + j] = s0 + c;
      out[o1 + j] = s1 + c;
      out[o2 + j] = s2 + c;
      out[o3 + j] = s3 + c;
    }
  }
  for (; i < m; i++) {
    const a0 = i * k;
    const o0 = i * n;
    for (let j = 0; j < n; j++) {
      const b0 = bOff + j * k;
      let s0 = 0;
      let s1 = 0;
      let t = 0;
      for (; t + 2 <= k; t += 2) {
        s0 += (a[a0 + t] as number) * (b[b0 + t] as number);
        s1 += (a[a0 + t + 1] as number) * (b[b0 + t + 1] as number);
      }
      if (t < k) s0 += (a[a0 + t] as number) * (b[b0 + t] as number);
      out[o0 + j] = s0 + s1 + (hasBias ? (bias[biasOff + j] as number) : 0);
    }
  }
}

/**
 * Sparse-input variant of gemmNT for A with many exact zeros (e.g. image backgrounds): each row of A
 * is compacted to its nonzeros first, so work scales with the number of nonzeros.
 * `nzIdx`/`nzVal` are scratch of length ≥ k.
 */
export function gemmNTSparseA(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  bOff: number,
  bias: Float32Array,
  biasOff: number,
  m: number,
  n: number,
  k: number,
  nzIdx: Int32Array,
  nzVal: Float64Array,
): void {
  const hasBias = biasOff >= 0;
  for (let i = 0; i < m; i++) {
    const a0 = i * k;
    let nnz = 0;
    for (let t = 0; t < k; t++) {
      const v = a[a0 + t] as number;
      if (v !== 0) {
        nzIdx[nnz] = t;
        nzVal[nnz] = v;
        nnz++;
      }
    }
    const o0 = i * n;
    let j = 0;
    for (; j + 2 <= n; j += 2) {
      const b0 = bOff + j * k;
      const b1 = b0 + k;
      let s0 = 0;
      let s1 = 0;
      for (let q = 0; q < nnz; q++) {
        const t = nzIdx[q] as number;
        const v = nzVal[q] as number;
        s0 += v * (b[b0 + t] as number);
        s1 += v * (b[b1 + t] as number);
      }
      out[o0 + j] = s0 + (hasBias ? (bias[biasOff + j] as number) : 0);
      out[o0 + j + 1] = s1 + (hasBias ? (bias[biasOff + j + 1] as number) : 0);
    }
    for (; j < n; j++) {
      const b0 = bOff + j * k;
      let s0 = 0;
      for (let q = 0; q < nnz; q++) s0 += (nzVal[q] as number) * (b[b0 + (nzIdx[q] as number)] as number);
      out[o0 + j] = s0 + (hasBias ? (bias[biasOff + j] as number) : 0);
    }
  }
}

/** Fraction of exact zeros among the first `len` entries (sampled on a stride for long arrays). */
export function zeroFraction(a: Float32Array, len: number): number {
  if (len === 0) return 0;
  const stride = len > 4096 ? 7 : 1;
  let zeros = 0;
  let seen = 0;
  for (let t = 0; t < len; t += stride) {
    if (a[t] === 0) zeros++;
    seen++;
  }
  return zeros / seen;
}

/**
 * out[outOff + t] += Σ_r coef[r] · src[srcOff[r] + t] for t < len, r < count: a sum of scaled rows,
 * four rows per pass so each element of `out` is loaded and stored once per four rows.
 */
export function addScaledRows(
  out: Float32Array,
  outOff: number,
  len: number,
  coef: Float64Array,
  src: Float32Array,
  srcOff: Int32Array,
  count: number,
): void {
  let r = 0;
  for (; r + 4 <= count; r += 4) {
    const c0 = coef[r] as number;
    const c1 = coef[r + 1] as number;
    const c2 = coef[r + 2] as number;
    const c3 = coef[r + 3] as number;
    const p0 = srcOff[r] as number;
    const p1 = srcOff[r + 1] as number;
    const p2 = srcOff[r + 2] as number;
    const p3 = srcOff[r + 3] as number;
    for (let t = 0; t < len; t++) {
      out[outOff + t] =
        (out[outOff + t] as number) +
        c0 * (src[p0 + t] as number) +
        c1 * (src[p1 + t] as number) +
        c2 * (src[p2 + t] as number) +
        c3 * (src[p3 + t] as number);
    }
  }
  for (; r + 2 <= count; r += 2) {
    const c0 = coef[r] as number;
    const c1 = coef[r + 1] as number;
    const p0 = srcOff[r] as number;
    const p1 = srcOff[r + 1] as number;
    for (let t = 0; t < len; t++) {
      out[outOff + t] =
        (out[outOff + t] as number) + c0 * (src[p0 + t] as number) + c1 * (src[p1 + t] as number);
    }
  }
  if (r < count) {
    const c0 = coef[r] as number;
    const p0 = srcOff[r] as number;
    for (let t = 0; t < len; t++)
      out[outOff + t] = (out[outOff + t] as number) + c0 * (src[p0 + t] as number);
  }
}

/**
 * Sparse-source variant: out[outOff + idx[q]] += coef · val[q] for q < nnz — one scaled sparse row.
 */
export function addScaledSparseRow(
  out: Float32Array,
  outOff: number,
  coef: number,
  idx: Int32Array,
  val: Float64Array,
  nnz: number,
): void {
  for (let q = 0; q < nnz; q++) {
    const p = outOff + (idx[q] as number);
    out[p] = (out[p] as number) + coef * (val[q] as number);
  }
}
