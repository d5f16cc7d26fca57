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
  // Blocks of 4 rows of A × 4 (then 2, then 1) rows of B, running sums in locals.
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
    // 4×4 block: 8 loads feed 16 multiply-adds (16 running sums still fit x64's 16 float registers).
    for (; j + 4 <= n; j += 4) {
      const b0 = bOff + j * k;
      const b1 = b0 + k;
      const b2 = b1 + k;
      const b3 = b2 + k;
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      let s20 = 0;
      let s21 = 0;
      let s22 = 0;
      let s23 = 0;
      let s30 = 0;
      let s31 = 0;
      let s32 = 0;
      let s33 = 0;
      for (let t = 0; t < k; t++) {
        const w0 = b[b0 + t] as number;
        const w1 = b[b1 + t] as number;
        const w2 = b[b2 + t] as number;
        const w3 = b[b3 + t] as number;
        let x = a[a0 + t] as number;
        s00 += x * w0;
        s01 += x * w1;
        s02 += x * w2;
        s03 += x * w3;
        x = a[a1 + t] as number;
        s10 += x * w0;
        s11 += x * w1;
        s12 += x * w2;
        s13 += x * w3;
        x = a[a2 + t] as number;
        s20 += x * w0;
        s21 += x * w1;
        s22 += x * w2;
        s23 += x * w3;
        x = a[a3 + t] as number;
        s30 += x * w0;
        s31 += x * w1;
        s32 += x * w2;
        s33 += x * w3;
      }
      const c0 = hasBias ? (bias[biasOff + j] as number) : 0;
      const c1 = hasBias ? (bias[biasOff + j + 1] as number) : 0;
      const c2 = hasBias ? (bias[biasOff + j + 2] as number) : 0;
      const c3 = hasBias ? (bias[biasOff + j + 3] as number) : 0;
      out[o0 + j] = s00 + c0;
      out[o0 + j + 1] = s01 + c1;
      out[o0 + j + 2] = s02 + c2;
      out[o0 + j + 3] = s03 + c3;
      out[o1 + j] = s10 + c0;
      out[o1 + j + 1] = s11 + c1;
      out[o1 + j + 2] = s12 + c2;
      out[o1 + j + 3] = s13 + c3;
      out[o2 + j] = s20 + c0;
      out[o2 + j + 1] = s21 + c1;
      out[o2 + j + 2] = s22 + c2;
      out[o2 + j + 3] = s23 + c3;
      out[o3 + j] = s30 + c0;
      out[o3 + j + 1] = s31 + c1;
      out[o3 + j + 2] = s32 + c2;
      out[o3 + j + 3] = s33 + c3;
    }
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
 * Compacts each of the m rows of A (m×k) to its nonzeros: row i's entries are
 * (idx, val)[start[i] .. start[i+1]). `idx`/`val` need m·k entries, `start` m+1.
 */
export function compactRows(
  a: Float32Array,
  m: number,
  k: number,
  start: Int32Array,
  idx: Int32Array,
  val: Float64Array,
): void {
  let nnz = 0;
  for (let i = 0; i < m; i++) {
    start[i] = nnz;
    const a0 = i * k;
    for (let t = 0; t < k; t++) {
      const v = a[a0 + t] as number;
      if (v !== 0) {
        idx[nnz] = t;
        val[nnz] = v;
        nnz++;
      }
    }
  }
  start[m] = nnz;
}

/**
 * gemmNT for a sparse A given in compacted form (see compactRows): work scales with A's nonzeros.
 * Output columns are the outer loop so the four weight rows in use stay in L1 across the batch.
 */
export function gemmNTCompactA(
  out: Float32Array,
  start: Int32Array,
  idx: Int32Array,
  val: Float64Array,
  b: Float32Array,
  bOff: number,
  bias: Float32Array,
  biasOff: number,
  m: number,
  n: number,
  k: number,
): void {
  const hasBias = biasOff >= 0;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const b0 = bOff + j * k;
    const b1 = b0 + k;
    const b2 = b1 + k;
    const b3 = b2 + k;
    const c0 = hasBias ? (bias[biasOff + j] as number) : 0;
    const c1 = hasBias ? (bias[biasOff + j + 1] as number) : 0;
    const c2 = hasBias ? (bias[biasOff + j + 2] as number) : 0;
    const c3 = hasBias ? (bias[biasOff + j + 3] as number) : 0;
    for (let i = 0; i < m; i++) {
      let s0 = c0;
      let s1 = c1;
      let s2 = c2;
      let s3 = c3;
      const end = start[i + 1] as number;
      for (let q = start[i] as number; q < end; q++) {
        const t = idx[q] as number;
        const v = val[q] as number;
        s0 += v * (b[b0 + t] as number);
        s1 += v * (b[b1 + t] as number);
        s2 += v * (b[b2 + t] as number);
        s3 += v * (b[b3 + t] as number);
      }
      const o = i * n + j;
      out[o] = s0;
      out[o + 1] = s1;
      out[o + 2] = s2;
      out[o + 3] = s3;
    }
  }
  for (; j < n; j++) {
    const b0 = bOff + j * k;
    const c0 = hasBias ? (bias[biasOff + j] as number) : 0;
    for (let i = 0; i < m; i++) {
      let s0 = c0;
      const end = start[i + 1] as number;
      for (let q = start[i] as number; q < end; q++)
        s0 += (val[q] as number) * (b[b0 + (idx[q] as number)] as number);
      out[i * n + j] = s0;
    }
  }
}

/**
 * Estimated fraction of exact zeros among the first `len` entries, from at most ~256 entries spread
 * evenly over the range (an odd stride, so it does not alias with row widths such as 28 or 784).
 */
export function zeroFraction(a: Float32Array, len: number): number {
  if (len === 0) return 0;
  const stride = len > 256 ? (len / 256) | 0 | 1 : 1;
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
 * up to eight rows per pass so each element of `out` is loaded and stored once per eight rows.
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
  for (; r + 8 <= count; r += 8) {
    const c0 = coef[r] as number;
    const c1 = coef[r + 1] as number;
    const c2 = coef[r + 2] as number;
    const c3 = coef[r + 3] as number;
    const c4 = coef[r + 4] as number;
    const c5 = coef[r + 5] as number;
    const c6 = coef[r + 6] as number;
    const c7 = coef[r + 7] as number;
    const p0 = srcOff[r] as number;
    const p1 = srcOff[r + 1] as number;
    const p2 = srcOff[r + 2] as number;
    const p3 = srcOff[r + 3] as number;
    const p4 = srcOff[r + 4] as number;
    const p5 = srcOff[r + 5] as number;
    const p6 = srcOff[r + 6] as number;
    const p7 = srcOff[r + 7] as number;
    for (let t = 0; t < len; t++) {
      out[outOff + t] =
        (out[outOff + t] as number) +
        (c0 * (src[p0 + t] as number) +
          c1 * (src[p1 + t] as number) +
          c2 * (src[p2 + t] as number) +
          c3 * (src[p3 + t] as number)) +
        (c4 * (src[p4 + t] as number) +
          c5 * (src[p5 + t] as number) +
          c6 * (src[p6 + t] as number) +
          c7 * (src[p7 + t] as number));
    }
  }
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
 * Sparse-source variant: out[outOff + idx[q]] += coef · val[q] for q in [from, from + count) — one
 * scaled sparse row.
 */
export function addScaledSparseRow(
  out: Float32Array,
  outOff: number,
  coef: number,
  idx: Int32Array,
  val: Float64Array,
  from: number,
  count: number,
): void {
  const end = from + count;
  for (let q = from; q < end; q++) {
    const p = outOff + (idx[q] as number);
    out[p] = (out[p] as number) + coef * (val[q] as number);
  }
}

/**
 * out[outOff + j·k + t] += Σ_e a[e·m + j] · b[e·k + t] for j < m, t < k (out += Aᵀ·B with A n×m and
 * B n×k): the weight gradient of a dense layer when its output gradient has few zeros. Blocks of
 * 2 outputs × 4 inputs keep eight running sums in locals while walking down the batch.
 */
export function gemmTNAdd(
  out: Float32Array,
  outOff: number,
  a: Float32Array,
  b: Float32Array,
  n: number,
  m: number,
  k: number,
): void {
  let j = 0;
  for (; j + 2 <= m; j += 2) {
    const r0 = outOff + j * k;
    const r1 = r0 + k;
    let t = 0;
    for (; t + 4 <= k; t += 4) {
      let s00 = 0;
      let s01 = 0;
      let s02 = 0;
      let s03 = 0;
      let s10 = 0;
      let s11 = 0;
      let s12 = 0;
      let s13 = 0;
      for (let e = 0; e < n; e++) {
        const g0 = a[e * m + j] as number;
        const g1 = a[e * m + j + 1] as number;
        const q = e * k + t;
        const x0 = b[q] as number;
        const x1 = b[q + 1] as number;
        const x2 = b[q + 2] as number;
        const x3 = b[q + 3] as number;
        s00 += g0 * x0;
        s01 += g0 * x1;
        s02 += g0 * x2;
        s03 += g0 * x3;
        s10 += g1 * x0;
        s11 += g1 * x1;
        s12 += g1 * x2;
        s13 += g1 * x3;
      }
      out[r0 + t] = (out[r0 + t] as number) + s00;
      out[r0 + t + 1] = (out[r0 + t + 1] as number) + s01;
      out[r0 + t + 2] = (out[r0 + t + 2] as number) + s02;
      out[r0 + t + 3] = (out[r0 + t + 3] as number) + s03;
      out[r1 + t] = (out[r1 + t] as number) + s10;
      out[r1 + t + 1] = (out[r1 + t + 1] as number) + s11;
      out[r1 + t + 2] = (out[r1 + t + 2] as number) + s12;
      out[r1 + t + 3] = (out[r1 + t + 3] as number) + s13;
    }
    for (; t < k; t++) {
      let s0 = 0;
      let s1 = 0;
      for (let e = 0; e < n; e++) {
        const x = b[e * k + t] as number;
        s0 += (a[e * m + j] as number) * x;
        s1 += (a[e * m + j + 1] as number) * x;
      }
      out[r0 + t] = (out[r0 + t] as number) + s0;
      out[r1 + t] = (out[r1 + t] as number) + s1;
    }
  }
  for (; j < m; j++) {
    const r0 = outOff + j * k;
    let t = 0;
    for (; t + 4 <= k; t += 4) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let e = 0; e < n; e++) {
        const g = a[e * m + j] as number;
        const q = e * k + t;
        s0 += g * (b[q] as number);
        s1 += g * (b[q + 1] as number);
        s2 += g * (b[q + 2] as number);
        s3 += g * (b[q + 3] as number);
      }
      out[r0 + t] = (out[r0 + t] as number) + s0;
      out[r0 + t + 1] = (out[r0 + t + 1] as number) + s1;
      out[r0 + t + 2] = (out[r0 + t + 2] as number) + s2;
      out[r0 + t + 3] = (out[r0 + t + 3] as number) + s3;
    }
    for (; t < k; t++) {
      let s = 0;
      for (let e = 0; e < n; e++) s += (a[e * m + j] as number) * (b[e * k + t] as number);
      out[r0 + t] = (out[r0 + t] as number) + s;
    }
  }
}
