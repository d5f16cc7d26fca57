/**
 * Layers with forward and backward passes over a batch of n examples stored row-major in flat
 * Float32Arrays (example e occupies [e·size, (e+1)·size)).
 *
 * Parameters are not owned by layers: each layer reads its weights from the model's single flat
 * parameter vector starting at `off` (weights first, then bias), and adds its parameter gradient into
 * the same positions of the flat gradient vector. Layers may keep scratch (JS is single-threaded).
 *
 * Image layout: an image with C channels and side S is stored channel-major, [C][S][S] (the NCHW
 * convention per example), so flattening is the identity on memory.
 *
 * Dense layers run their matrix products through the Wasm SIMD kernels of simd.ts when the runtime
 * has them and the layer is big enough; otherwise (and for conv, pooling, embeddings) scalar JS
 * kernels from kernels.ts, which skip exact zeros in sparse inputs and ReLU gradients.
 */
import { OrchardError } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import type { BagExamples } from '../data/types.ts';
import {
  addScaledRows,
  addScaledSparseRow,
  compactRows,
  gemmNT,
  gemmNTCompactA,
  gemmTNAdd,
  zeroFraction,
} from './kernels.ts';
import { simdGemm } from './simd.ts';

export interface Layer {
  readonly name: string;
  /** Values per example going in and coming out. */
  readonly inSize: number;
  readonly outSize: number;
  readonly numParams: number;
  /** Writes initial parameters into params[off .. off + numParams). */
  init(params: Float32Array, off: number, rng: Rng): void;
  /** Sizes internal scratch for batches of up to n examples (called before forward/backward). */
  reserve(n: number): void;
  forward(params: Float32Array, off: number, x: Float32Array, n: number, y: Float32Array): void;
  /**
   * Given dy = ∂L/∂y, ADDS ∂L/∂params into grad[off ..] and, when dx is not null, WRITES ∂L/∂x into dx.
   * x and y must be the arrays of the immediately preceding forward call.
   */
  backward(
    params: Float32Array,
    off: number,
    x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
    dx: Float32Array | null,
  ): void;
}

export type WeightInit = 'glorot' | 'he' | 'zeros';

function fillInit(
  params: Float32Array,
  off: number,
  count: number,
  fanIn: number,
  fanOut: number,
  how: WeightInit,
  rng: Rng,
): void {
  if (how === 'zeros') {
    params.fill(0, off, off + count);
    return;
  }
  // Glorot: U(±√(6/(fanIn+fanOut))); He (for ReLU): U(±√(6/fanIn)), i.e. variance 2/fanIn.
  const a = how === 'he' ? Math.sqrt(6 / fanIn) : Math.sqrt(6 / (fanIn + fanOut));
  for (let t = 0; t < count; t++) params[off + t] = rng.uniform(-a, a);
}

/** Inputs with at least this fraction of exact zeros take the sparse kernels. */
const SPARSE_INPUT_THRESHOLD = 0.5;
/**
 * Dense layers with at least this many multiply-adds per batch use the Wasm SIMD kernels (below that,
 * copying operands costs more than it saves).
 */
const SIMD_MIN_MACS = 2048;
let simdEnabled = true;

/** Turns the Wasm SIMD path off (tests and benchmarks of the scalar kernels) or back on. */
export function setSimdKernels(enabled: boolean): void {
  simdEnabled = enabled;
}

/** Whether Wasm SIMD kernels are available and enabled. */
export function simdKernelsActive(): boolean {
  return simdEnabled && simdGemm !== null;
}

/** Forward: any layer with enough work (a single output column is padded to two). */
function useSimdForward(n: number, k: number, m: number): boolean {
  return simdEnabled && simdGemm !== null && n * k * m >= SIMD_MIN_MACS;
}

/** Weight gradient: a single output row would pay for padding every input row, so m ≥ 2 only. */
function useSimdBackward(n: number, k: number, m: number): boolean {
  return simdEnabled && simdGemm !== null && m >= 2 && n * k * m >= SIMD_MIN_MACS;
}

/** Copies rows×k values of src (from srcOff) into heap at dst with row stride kp, zeroing padding. */
function copyPadded(
  heap: Float32Array,
  dst: number,
  src: Float32Array,
  srcOff: number,
  rows: number,
  k: number,
  rowsPad: number,
  kp: number,
): void {
  if (k === kp) heap.set(src.subarray(srcOff, srcOff + rows * k), dst);
  else
    for (let r = 0; r < rows; r++) {
      const d = dst + r * kp;
      const s0 = srcOff + r * k;
      for (let t = 0; t < k; t++) heap[d + t] = src[s0 + t] as number;
      for (let t = k; t < kp; t++) heap[d + t] = 0;
    }
  if (rowsPad > rows) heap.fill(0, dst + rows * kp, dst + rowsPad * kp);
}

/** Output gradients with fewer zeros than this take the blocked dense weight-gradient kernel. */
const SPARSE_GRAD_THRESHOLD = 0.25;

/** y = x·Wᵀ + b with W stored [out][in] (row j holds the weights of output j), then b[out]. */
export class Dense implements Layer {
  readonly name: string;
  readonly numParams: number;
  private coef = new Float64Array(0);
  private rowOff = new Int32Array(0);
  /** The last forward input compacted to its nonzeros (sparse path), reused by backward. */
  private nzStart = new Int32Array(0);
  private nzIdx = new Int32Array(0);
  private nzVal = new Float64Array(0);
  private sparse = false;

  constructor(
    readonly inSize: number,
    readonly outSize: number,
    private readonly initKind: WeightInit = 'glorot',
  ) {
    this.name = `dense(${inSize}→${outSize})`;
    this.numParams = inSize * outSize + outSize;
    this.reserve(1);
  }

  init(params: Float32Array, off: number, rng: Rng): void {
    fillInit(params, off, this.inSize * this.outSize, this.inSize, this.outSize, this.initKind, rng);
    params.fill(0, off + this.inSize * this.outSize, off + this.numParams);
  }

  reserve(n: number): void {
    const need = Math.max(n, this.outSize);
    if (this.coef.length < need) {
      this.coef = new Float64Array(need);
      this.rowOff = new Int32Array(need);
    }
    // Compaction buffers only for inputs wide enough to take the sparse path.
    if (this.inSize >= 32 && this.nzStart.length < n + 1) {
      this.nzStart = new Int32Array(n + 1);
      this.nzIdx = new Int32Array(n * this.inSize);
      this.nzVal = new Float64Array(n * this.inSize);
    }
  }

  forward(params: Float32Array, off: number, x: Float32Array, n: number, y: Float32Array): void {
    const k = this.inSize;
    const biasOff = off + k * this.outSize;
    if (useSimdForward(n, k, this.outSize)) {
      this.sparse = false;
      this.simdForward(params, off, x, n, y);
      return;
    }
    this.sparse = k >= 32 && zeroFraction(x, n * k) >= SPARSE_INPUT_THRESHOLD;
    if (this.sparse) {
      const { nzStart, nzIdx, nzVal } = this;
      compactRows(x, n, k, nzStart, nzIdx, nzVal);
      gemmNTCompactA(y, nzStart, nzIdx, nzVal, params, off, params, biasOff, n, this.outSize, k);
    } else gemmNT(y, x, params, off, params, biasOff, n, this.outSize, k);
  }

  /** y = x·Wᵀ + b through the SIMD kernel: operands are copied (zero-padded) into its memory. */
  private simdForward(params: Float32Array, off: number, x: Float32Array, n: number, y: Float32Array): void {
    const g = simdGemm as NonNullable<typeof simdGemm>;
    const k = this.inSize;
    const m = this.outSize;
    const np = (n + 3) & ~3; // rows padded to the kernel's row block (4)
    const mp = m + (m & 1);
    const kp = (k + 3) & ~3;
    const a = 0;
    const b = np * kp;
    const o = b + mp * kp;
    g.reserve(o + np * mp);
    const heap = g.heap;
    copyPadded(heap, a, x, 0, n, k, np, kp);
    copyPadded(heap, b, params, off, m, k, mp, kp);
    g.gemmNT(o, a, b, np, mp, kp);
    const biasOff = off + k * m;
    for (let e = 0; e < n; e++) {
      const ho = o + e * mp;
      const yo = e * m;
      for (let j = 0; j < m; j++) y[yo + j] = (heap[ho + j] as number) + (params[biasOff + j] as number);
    }
  }

  /**
   * grad(W) += dyᵀ·x through the SIMD kernel: the gradient rows are copied in, accumulated in place
   * and copied back, with x's rows padded to a multiple of 4 columns.
   */
  private simdWeightGrad(
    off: number,
    x: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
  ): void {
    const g = simdGemm as NonNullable<typeof simdGemm>;
    const k = this.inSize;
    const m = this.outSize;
    const kp = (k + 3) & ~3;
    const mp = m + (m & 1); // the kernel takes output rows in pairs
    const a = 0;
    const b = n * mp;
    const o = b + n * kp;
    g.reserve(o + mp * kp);
    const heap = g.heap;
    copyPadded(heap, a, dy, 0, n, m, n, mp);
    copyPadded(heap, b, x, 0, n, k, n, kp);
    copyPadded(heap, o, grad, off, m, k, mp, kp);
    g.gemmTNAcc(o, a, b, n, mp, kp);
    if (k === kp) grad.set(heap.subarray(o, o + m * k), off);
    else
      for (let j = 0; j < m; j++) {
        const ho = o + j * kp;
        const go = off + j * k;
        for (let t = 0; t < k; t++) grad[go + t] = heap[ho + t] as number;
      }
  }

  /** dx = dy·W through gemm_tn_acc with the roles swapped: a = dyᵀ (m×n), b = W (m×k), out = dx. */
  private simdInputGrad(
    params: Float32Array,
    off: number,
    dy: Float32Array,
    n: number,
    dx: Float32Array,
  ): void {
    const g = simdGemm as NonNullable<typeof simdGemm>;
    const k = this.inSize;
    const m = this.outSize;
    const kp = (k + 3) & ~3;
    const np = n + (n & 1); // the kernel takes output rows (examples here) in pairs
    const a = 0;
    const b = m * np;
    const o = b + m * kp;
    g.reserve(o + np * kp);
    const heap = g.heap;
    heap.fill(0, a, b);
    for (let e = 0; e < n; e++) for (let j = 0; j < m; j++) heap[a + j * np + e] = dy[e * m + j] as number;
    copyPadded(heap, b, params, off, m, k, m, kp);
    heap.fill(0, o, o + np * kp);
    g.gemmTNAcc(o, a, b, m, np, kp);
    if (k === kp) dx.set(heap.subarray(o, o + n * k));
    else for (let e = 0; e < n; e++) dx.set(heap.subarray(o + e * kp, o + e * kp + k), e * k);
  }

  backward(
    params: Float32Array,
    off: number,
    x: Float32Array,
    _y: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    const k = this.inSize;
    const m = this.outSize;
    const biasOff = off + k * m;
    const { coef, rowOff, nzIdx, nzVal } = this;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let e = 0; e < n; e++) s += dy[e * m + j] as number;
      grad[biasOff + j] = (grad[biasOff + j] as number) + s;
    }
    if (useSimdBackward(n, k, m)) {
      this.simdWeightGrad(off, x, dy, n, grad);
    } else if (this.sparse) {
      // dW[j] += dy[e][j] · x[e] over the compacted rows from forward; j outer keeps row j of dW in L1.
      const { nzStart } = this;
      for (let j = 0; j < m; j++) {
        const row = off + j * k;
        for (let e = 0; e < n; e++) {
          const g = dy[e * m + j] as number;
          if (g === 0) continue;
          const s0 = nzStart[e] as number;
          addScaledSparseRow(grad, row, g, nzIdx, nzVal, s0, (nzStart[e + 1] as number) - s0);
        }
      }
    } else if (m >= 2 && zeroFraction(dy, n * m) < SPARSE_GRAD_THRESHOLD) {
      // Few zeros in dy (output layers, tanh): blocked dense Aᵀ·B.
      gemmTNAdd(grad, off, dy, x, n, m, k);
    } else {
      // dW[j] += Σ_e dy[e][j] · x[e], skipping the zero entries ReLU leaves in dy.
      for (let j = 0; j < m; j++) {
        let count = 0;
        for (let e = 0; e < n; e++) {
          const g = dy[e * m + j] as number;
          if (g !== 0) {
            coef[count] = g;
            rowOff[count] = e * k;
            count++;
          }
        }
        if (count > 0) addScaledRows(grad, off + j * k, k, coef, x, rowOff, count);
      }
    }
    if (dx !== null && useSimdBackward(n, k, m)) this.simdInputGrad(params, off, dy, n, dx);
    else if (dx !== null) {
      // dx[e] = Σ_j dy[e][j] · W[j]
      dx.fill(0, 0, n * k);
      for (let e = 0; e < n; e++) {
        let count = 0;
        for (let j = 0; j < m; j++) {
          const g = dy[e * m + j] as number;
          if (g !== 0) {
            coef[count] = g;
            rowOff[count] = off + j * k;
            count++;
          }
        }
        if (count > 0) addScaledRows(dx, e * k, k, coef, params, rowOff, count);
      }
    }
  }
}

export class Relu implements Layer {
  readonly name = 'relu';
  readonly numParams = 0;
  readonly outSize: number;
  constructor(readonly inSize: number) {
    this.outSize = inSize;
  }
  init(): void {}
  reserve(): void {}
  forward(_p: Float32Array, _off: number, x: Float32Array, n: number, y: Float32Array): void {
    const len = n * this.inSize;
    for (let t = 0; t < len; t++) {
      const v = x[t] as number;
      y[t] = Math.max(v, 0);
    }
  }
  backward(
    _p: Float32Array,
    _off: number,
    _x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    n: number,
    _grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    if (dx === null) return;
    const len = n * this.inSize;
    for (let t = 0; t < len; t++) dx[t] = (y[t] as number) > 0 ? (dy[t] as number) : 0;
  }
}

export class Tanh implements Layer {
  readonly name = 'tanh';
  readonly numParams = 0;
  readonly outSize: number;
  constructor(readonly inSize: number) {
    this.outSize = inSize;
  }
  init(): void {}
  reserve(): void {}
  forward(_p: Float32Array, _off: number, x: Float32Array, n: number, y: Float32Array): void {
    const len = n * this.inSize;
    for (let t = 0; t < len; t++) y[t] = Math.tanh(x[t] as number);
  }
  backward(
    _p: Float32Array,
    _off: number,
    _x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    n: number,
    _grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    if (dx === null) return;
    const len = n * this.inSize;
    for (let t = 0; t < len; t++) {
      const v = y[t] as number;
      dx[t] = (dy[t] as number) * (1 - v * v);
    }
  }
}

/** Identity on memory: the [C][S][S] image layout is already the flattened feature order. */
export class Flatten implements Layer {
  readonly name = 'flatten';
  readonly numParams = 0;
  readonly outSize: number;
  constructor(readonly inSize: number) {
    this.outSize = inSize;
  }
  init(): void {}
  reserve(): void {}
  forward(_p: Float32Array, _off: number, x: Float32Array, n: number, y: Float32Array): void {
    y.set(x.subarray(0, n * this.inSize));
  }
  backward(
    _p: Float32Array,
    _off: number,
    _x: Float32Array,
    _y: Float32Array,
    dy: Float32Array,
    n: number,
    _grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    if (dx !== null) dx.set(dy.subarray(0, n * this.inSize));
  }
}

export type Padding = 'valid' | 'same';

/**
 * 2-D convolution, stride 1, square images and kernels. Input [inC][S][S], output [outC][S'][S'] with
 * S' = S − k + 1 ('valid') or S ('same', zero padding of ⌊(k−1)/2⌋ before and the rest after).
 * Weights [outC][inC][k][k], then bias[outC].
 */
export class Conv2d implements Layer {
  readonly name: string;
  readonly inSize: number;
  readonly outSize: number;
  readonly numParams: number;
  readonly outSide: number;
  private readonly pad: number;

  constructor(
    readonly inChannels: number,
    readonly side: number,
    readonly outChannels: number,
    readonly kernel: number,
    readonly padding: Padding = 'same',
  ) {
    this.outSide = padding === 'same' ? side : side - kernel + 1;
    if (this.outSide < 1)
      throw new OrchardError(
        'CONFIG_INVALID',
        `conv kernel ${kernel} is larger than the ${side}×${side} input`,
      );
    this.pad = padding === 'same' ? (kernel - 1) >> 1 : 0;
    this.inSize = inChannels * side * side;
    this.outSize = outChannels * this.outSide * this.outSide;
    this.numParams = outChannels * inChannels * kernel * kernel + outChannels;
    this.name = `conv${kernel}x${kernel}(${inChannels}→${outChannels}, ${padding})`;
  }

  init(params: Float32Array, off: number, rng: Rng): void {
    const kk = this.kernel * this.kernel;
    const wCount = this.outChannels * this.inChannels * kk;
    fillInit(params, off, wCount, this.inChannels * kk, this.outChannels * kk, 'he', rng);
    params.fill(0, off + wCount, off + this.numParams);
  }

  reserve(): void {}

  forward(params: Float32Array, off: number, x: Float32Array, n: number, y: Float32Array): void {
    if (this.simdWorthIt()) this.forwardSimd(params, off, x, n, y);
    else this.forwardScalar(params, off, x, n, y);
  }

  backward(
    params: Float32Array,
    off: number,
    x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    if (this.simdWorthIt()) this.backwardSimd(params, off, x, dy, n, grad, dx);
    else this.backwardScalar(params, off, x, y, dy, n, grad, dx);
  }

  private simdWorthIt(): boolean {
    const kk = this.inChannels * this.kernel * this.kernel;
    return (
      simdEnabled && simdGemm !== null && kk * this.outChannels * this.outSide * this.outSide >= SIMD_MIN_MACS
    );
  }

  /**
   * im2col: writes the patch matrix Pᵀ of example xb into heap at dst, one row per (ic, ky, kx) and
   * one column per output pixel (row stride pixP), zeros where the kernel hangs over the border.
   */
  private im2col(heap: Float32Array, dst: number, x: Float32Array, xb: number, pixP: number): void {
    const { inChannels: inC, kernel: k, side: s, outSide: os, pad } = this;
    let row = dst;
    for (let ic = 0; ic < inC; ic++) {
      const ib = xb + ic * s * s;
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          heap.fill(0, row, row + pixP);
          const oyLo = Math.max(0, pad - ky);
          const oyHi = Math.min(os, s + pad - ky);
          const oxLo = Math.max(0, pad - kx);
          const oxHi = Math.min(os, s + pad - kx);
          for (let oy = oyLo; oy < oyHi; oy++) {
            const ri = ib + (oy + ky - pad) * s + kx - pad;
            const ro = row + oy * os;
            for (let ox = oxLo; ox < oxHi; ox++) heap[ro + ox] = x[ri + ox] as number;
          }
          row += pixP;
        }
      }
    }
  }

  /** Per example: out[oc, pix] = bias[oc] + Σ_K W[oc, K] · Pᵀ[K, pix] with gemm_tn_acc (a = Wᵀ). */
  private forwardSimd(params: Float32Array, off: number, x: Float32Array, n: number, y: Float32Array): void {
    const g = simdGemm as NonNullable<typeof simdGemm>;
    const { inChannels: inC, outChannels: outC, kernel: k } = this;
    const kk = inC * k * k;
    const pix = this.outSide * this.outSide;
    const pixP = (pix + 3) & ~3;
    const outCp = outC + (outC & 1);
    const wt = 0;
    const p = wt + kk * outCp;
    const o = p + kk * pixP;
    g.reserve(o + outCp * pixP);
    const heap = g.heap;
    heap.fill(0, wt, p);
    for (let oc = 0; oc < outC; oc++) {
      const wb = off + oc * kk;
      for (let t = 0; t < kk; t++) heap[wt + t * outCp + oc] = params[wb + t] as number;
    }
    const biasOff = off + outC * kk;
    for (let e = 0; e < n; e++) {
      this.im2col(heap, p, x, e * this.inSize, pixP);
      for (let oc = 0; oc < outCp; oc++)
        heap.fill(oc < outC ? (params[biasOff + oc] as number) : 0, o + oc * pixP, o + (oc + 1) * pixP);
      g.gemmTNAcc(o, wt, p, kk, outCp, pixP);
      const yb = e * this.outSize;
      if (pix === pixP) y.set(heap.subarray(o, o + outC * pix), yb);
      else
        for (let oc = 0; oc < outC; oc++)
          y.set(heap.subarray(o + oc * pixP, o + oc * pixP + pix), yb + oc * pix);
    }
  }

  /**
   * Per example: dW[oc, K] += Σ_pix dOut[oc, pix] · Pᵀ[K, pix] (gemm_nt), and when dx is wanted
   * dPᵀ[K, pix] = Σ_oc W[oc, K] · dOut[oc, pix] (gemm_tn_acc) scattered back onto the image (col2im).
   */
  private backwardSimd(
    params: Float32Array,
    off: number,
    x: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    const g = simdGemm as NonNullable<typeof simdGemm>;
    const { inChannels: inC, outChannels: outC, kernel: k, side: s, outSide: os, pad } = this;
    const kk = inC * k * k;
    const kkP = kk + (kk & 1);
    const pix = os * os;
    const pixP = (pix + 3) & ~3;
    const outC4 = (outC + 3) & ~3;
    const w = 0; // W as [outC][kkP] for the input gradient
    const d = w + outC * kkP; // dOut as [outC4][pixP]
    const p = d + outC4 * pixP; // Pᵀ as [kkP][pixP]
    const gw = p + kkP * pixP; // dW block [outC4][kkP]
    const dp = gw + outC4 * kkP; // dPᵀ [kkP][pixP]
    g.reserve(dp + kkP * pixP);
    const heap = g.heap;
    heap.fill(0, w, d);
    for (let oc = 0; oc < outC; oc++)
      for (let t = 0; t < kk; t++) heap[w + oc * kkP + t] = params[off + oc * kk + t] as number;
    const biasOff = off + outC * kk;
    if (dx !== null) dx.fill(0, 0, n * this.inSize);
    for (let e = 0; e < n; e++) {
      const yb = e * this.outSize;
      heap.fill(0, d, p);
      for (let oc = 0; oc < outC; oc++) {
        let bs = 0;
        for (let q = 0; q < pix; q++) {
          const v = dy[yb + oc * pix + q] as number;
          heap[d + oc * pixP + q] = v;
          bs += v;
        }
        grad[biasOff + oc] = (grad[biasOff + oc] as number) + bs;
      }
      this.im2col(heap, p, x, e * this.inSize, pixP);
      if (kkP > kk) heap.fill(0, p + kk * pixP, p + kkP * pixP);
      g.gemmNT(gw, d, p, outC4, kkP, pixP);
      for (let oc = 0; oc < outC; oc++) {
        const go = off + oc * kk;
        const ho = gw + oc * kkP;
        for (let t = 0; t < kk; t++) grad[go + t] = (grad[go + t] as number) + (heap[ho + t] as number);
      }
      if (dx === null) continue;
      heap.fill(0, dp, dp + kkP * pixP);
      g.gemmTNAcc(dp, w, d, outC, kkP, pixP);
      // col2im: every patch entry flows back to the pixel it was copied from.
      const xb = e * this.inSize;
      let row = dp;
      for (let ic = 0; ic < inC; ic++) {
        const ib = xb + ic * s * s;
        for (let ky = 0; ky < k; ky++) {
          for (let kx = 0; kx < k; kx++) {
            const oyLo = Math.max(0, pad - ky);
            const oyHi = Math.min(os, s + pad - ky);
            const oxLo = Math.max(0, pad - kx);
            const oxHi = Math.min(os, s + pad - kx);
            for (let oy = oyLo; oy < oyHi; oy++) {
              const ri = ib + (oy + ky - pad) * s + kx - pad;
              const ro = row + oy * os;
              for (let ox = oxLo; ox < oxHi; ox++)
                dx[ri + ox] = (dx[ri + ox] as number) + (heap[ro + ox] as number);
            }
            row += pixP;
          }
        }
      }
    }
  }

  private forwardScalar(
    params: Float32Array,
    off: number,
    x: Float32Array,
    n: number,
    y: Float32Array,
  ): void {
    const { inChannels: inC, outChannels: outC, kernel: k, side: s, outSide: os, pad } = this;
    const plane = os * os;
    const biasOff = off + outC * inC * k * k;
    for (let e = 0; e < n; e++) {
      const xb = e * this.inSize;
      const yb = e * this.outSize;
      for (let oc = 0; oc < outC; oc++) {
        const ob = yb + oc * plane;
        y.fill(params[biasOff + oc] as number, ob, ob + plane);
        for (let ic = 0; ic < inC; ic++) {
          const ib = xb + ic * s * s;
          const wb = off + (oc * inC + ic) * k * k;
          for (let ky = 0; ky < k; ky++) {
            const oyLo = Math.max(0, pad - ky);
            const oyHi = Math.min(os, s + pad - ky);
            for (let kx = 0; kx < k; kx++) {
              const w = params[wb + ky * k + kx] as number;
              if (w === 0) continue;
              const oxLo = Math.max(0, pad - kx);
              const oxHi = Math.min(os, s + pad - kx);
              for (let oy = oyLo; oy < oyHi; oy++) {
                const ro = ob + oy * os;
                const ri = ib + (oy + ky - pad) * s + kx - pad;
                for (let ox = oxLo; ox < oxHi; ox++)
                  y[ro + ox] = (y[ro + ox] as number) + w * (x[ri + ox] as number);
              }
            }
          }
        }
      }
    }
  }

  private backwardScalar(
    params: Float32Array,
    off: number,
    x: Float32Array,
    _y: Float32Array,
    dy: Float32Array,
    n: number,
    grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    const { inChannels: inC, outChannels: outC, kernel: k, side: s, outSide: os, pad } = this;
    const plane = os * os;
    const biasOff = off + outC * inC * k * k;
    if (dx !== null) dx.fill(0, 0, n * this.inSize);
    for (let e = 0; e < n; e++) {
      const xb = e * this.inSize;
      const yb = e * this.outSize;
      for (let oc = 0; oc < outC; oc++) {
        const ob = yb + oc * plane;
        let bs = 0;
        for (let t = 0; t < plane; t++) bs += dy[ob + t] as number;
        grad[biasOff + oc] = (grad[biasOff + oc] as number) + bs;
        for (let ic = 0; ic < inC; ic++) {
          const ib = xb + ic * s * s;
          const wb = off + (oc * inC + ic) * k * k;
          for (let ky = 0; ky < k; ky++) {
            const oyLo = Math.max(0, pad - ky);
            const oyHi = Math.min(os, s + pad - ky);
            for (let kx = 0; kx < k; kx++) {
              const oxLo = Math.max(0, pad - kx);
              const oxHi = Math.min(os, s + pad - kx);
              const w = params[wb + ky * k + kx] as number;
              let gw = 0;
              for (let oy = oyLo; oy < oyHi; oy++) {
                const ro = ob + oy * os;
                const ri = ib + (oy + ky - pad) * s + kx - pad;
                for (let ox = oxLo; ox < oxHi; ox++) gw += (dy[ro + ox] as number) * (x[ri + ox] as number);
                if (dx !== null && w !== 0) {
                  for (let ox = oxLo; ox < oxHi; ox++)
                    dx[ri + ox] = (dx[ri + ox] as number) + w * (dy[ro + ox] as number);
                }
              }
              const gi = wb + ky * k + kx;
              grad[gi] = (grad[gi] as number) + gw;
            }
          }
        }
      }
    }
  }
}

/** 2×2 max pooling, stride 2, per channel; an odd last row/column is dropped. */
export class MaxPool2 implements Layer {
  readonly name = 'maxpool2x2';
  readonly numParams = 0;
  readonly inSize: number;
  readonly outSize: number;
  readonly outSide: number;
  /** Per output value: the input index (within its example) that won. */
  private argmax = new Int32Array(0);

  constructor(
    readonly channels: number,
    readonly side: number,
  ) {
    this.outSide = side >> 1;
    if (this.outSide < 1) throw new OrchardError('CONFIG_INVALID', `cannot 2×2-pool a ${side}×${side} image`);
    this.inSize = channels * side * side;
    this.outSize = channels * this.outSide * this.outSide;
  }
  init(): void {}
  reserve(n: number): void {
    if (this.argmax.length < n * this.outSize) this.argmax = new Int32Array(n * this.outSize);
  }
  forward(_p: Float32Array, _off: number, x: Float32Array, n: number, y: Float32Array): void {
    const { channels, side: s, outSide: os, argmax } = this;
    let o = 0;
    for (let e = 0; e < n; e++) {
      const xb = e * this.inSize;
      for (let c = 0; c < channels; c++) {
        const cb = c * s * s;
        for (let oy = 0; oy < os; oy++) {
          for (let ox = 0; ox < os; ox++) {
            const i00 = cb + 2 * oy * s + 2 * ox;
            let best = i00;
            let v = x[xb + i00] as number;
            const cand1 = i00 + 1;
            const cand2 = i00 + s;
            const cand3 = i00 + s + 1;
            if ((x[xb + cand1] as number) > v) {
              best = cand1;
              v = x[xb + cand1] as number;
            }
            if ((x[xb + cand2] as number) > v) {
              best = cand2;
              v = x[xb + cand2] as number;
            }
            if ((x[xb + cand3] as number) > v) {
              best = cand3;
              v = x[xb + cand3] as number;
            }
            y[o] = v;
            argmax[o] = best;
            o++;
          }
        }
      }
    }
  }
  backward(
    _p: Float32Array,
    _off: number,
    _x: Float32Array,
    _y: Float32Array,
    dy: Float32Array,
    n: number,
    _grad: Float32Array,
    dx: Float32Array | null,
  ): void {
    if (dx === null) return;
    dx.fill(0, 0, n * this.inSize);
    const per = this.outSize;
    for (let e = 0; e < n; e++) {
      const xb = e * this.inSize;
      for (let t = 0; t < per; t++) {
        const o = e * per + t;
        const i = xb + (this.argmax[o] as number);
        dx[i] = (dx[i] as number) + (dy[o] as number);
      }
    }
  }
}

/**
 * Embedding bag: example i's output is the weighted mean of the embedding rows of its ids,
 * Σ_t w_t·E[id_t] / Σ_t w_t (weights 1 when absent; an empty or zero-weight bag gives zeros).
 * Parameters: E[vocab][dim].
 */
export class EmbeddingBag {
  readonly name: string;
  readonly numParams: number;
  readonly outSize: number;
  constructor(
    readonly vocab: number,
    readonly dim: number,
  ) {
    this.numParams = vocab * dim;
    this.outSize = dim;
    this.name = `embedding_bag(${vocab}×${dim})`;
  }

  init(params: Float32Array, off: number, rng: Rng): void {
    // Small normal rows (σ = 1/√dim) so initial bag means are O(1/√dim) regardless of dim.
    const sd = 1 / Math.sqrt(this.dim);
    for (let t = 0; t < this.numParams; t++) params[off + t] = rng.normal() * sd;
  }

  /** Throws DATA_INVALID when an id of the first n bags is outside [0, vocab). */
  check(bags: BagExamples, n: number): void {
    const { offsets, ids } = bags;
    const lo = offsets[0] as number;
    const hi = offsets[n] as number;
    if (!(lo >= 0 && hi >= lo && hi <= ids.length))
      throw new OrchardError('DATA_INVALID', `bag offsets [${lo}, ${hi}) do not fit ${ids.length} ids`);
    for (let t = lo; t < hi; t++) {
      const id = ids[t] as number;
      if (!(id >= 0 && id < this.vocab))
        throw new OrchardError('DATA_INVALID', `bag id ${id} is outside [0, ${this.vocab})`);
    }
  }

  forward(params: Float32Array, off: number, bags: BagExamples, n: number, y: Float32Array): void {
    const { offsets, ids, weights } = bags;
    const d = this.dim;
    y.fill(0, 0, n * d);
    for (let i = 0; i < n; i++) {
      const start = offsets[i] as number;
      const end = offsets[i + 1] as number;
      const yb = i * d;
      let wsum = 0;
      for (let t = start; t < end; t++) {
        const w = weights === undefined ? 1 : (weights[t] as number);
        wsum += w;
        const eb = off + (ids[t] as number) * d;
        for (let c = 0; c < d; c++) y[yb + c] = (y[yb + c] as number) + w * (params[eb + c] as number);
      }
      if (wsum !== 0) {
        const inv = 1 / wsum;
        for (let c = 0; c < d; c++) y[yb + c] = (y[yb + c] as number) * inv;
      }
    }
  }

  /** Adds ∂L/∂E into grad given dy = ∂L/∂y (ids are not differentiable inputs). */
  backward(off: number, bags: BagExamples, n: number, dy: Float32Array, grad: Float32Array): void {
    const { offsets, ids, weights } = bags;
    const d = this.dim;
    for (let i = 0; i < n; i++) {
      const start = offsets[i] as number;
      const end = offsets[i + 1] as number;
      let wsum = 0;
      for (let t = start; t < end; t++) wsum += weights === undefined ? 1 : (weights[t] as number);
      if (wsum === 0) continue;
      const yb = i * d;
      for (let t = start; t < end; t++) {
        const s = (weights === undefined ? 1 : (weights[t] as number)) / wsum;
        if (s === 0) continue;
        const eb = off + (ids[t] as number) * d;
        for (let c = 0; c < d; c++) grad[eb + c] = (grad[eb + c] as number) + s * (dy[yb + c] as number);
      }
    }
  }
}
