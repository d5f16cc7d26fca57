/**
 * Fused minibatch SGD for softmax regression (one dense layer + softmax cross-entropy), the model of the
 * simulator's headline benchmark. The generic path gathers each minibatch (takeRows), copies it and the
 * weights into the SIMD kernel's memory, copies the gradient back and applies it with a separate axpy:
 * for a 10×60×10 step those copies and passes cost more than the arithmetic. Here the weights stay in
 * the kernel's memory for a whole local-training run, each epoch's shuffled rows are copied in once,
 * and the update W += (−lr/m)·(P − Y)ᵀ·X is accumulated into the weights in place by the same kernel
 * that computes weight gradients (gemm_tn_acc), so a step is one forward product, a small softmax in
 * JS and one accumulating product.
 *
 * Mathematically this is exactly SGD on the mean cross-entropy: the same update as lossAndGrad + axpy,
 * up to float32 rounding. Without Wasm SIMD (or with it switched off) plain-JS versions of the two
 * products run on a JS array with the same layout.
 */
import { OrchardError, ShapeError } from '../core/errors.ts';
import type { DenseExamples } from '../data/types.ts';
import { simdKernelsActive } from './layers.ts';
import { createSimdGemm, type SimdGemm } from './simd.ts';

/** out(m×n) = a(m×k)·b(n×k)ᵀ on float offsets into `heap` (the scalar twin of SimdGemm.gemmNT). */
function gemmNTScalar(
  heap: Float32Array,
  out: number,
  a: number,
  b: number,
  m: number,
  n: number,
  k: number,
): void {
  for (let i = 0; i < m; i++) {
    const ai = a + i * k;
    for (let j = 0; j < n; j++) {
      const bj = b + j * k;
      let s = 0;
      for (let t = 0; t < k; t++) s += (heap[ai + t] as number) * (heap[bj + t] as number);
      heap[out + i * n + j] = s;
    }
  }
}

/** out(m×k) += a(n×m)ᵀ·b(n×k) on float offsets into `heap` (the scalar twin of SimdGemm.gemmTNAcc). */
function gemmTNAccScalar(
  heap: Float32Array,
  out: number,
  a: number,
  b: number,
  n: number,
  m: number,
  k: number,
): void {
  for (let j = 0; j < m; j++) {
    const oj = out + j * k;
    for (let e = 0; e < n; e++) {
      const s = heap[a + e * m + j] as number;
      if (s === 0) continue;
      const be = b + e * k;
      for (let t = 0; t < k; t++) heap[oj + t] = (heap[oj + t] as number) + s * (heap[be + t] as number);
    }
  }
}

/**
 * One local-training run of softmax regression: `begin` loads parameters and data, `arrange` lays out
 * an epoch's shuffled rows, `step` takes one SGD step on a contiguous range of them, `finishDelta` writes
 * start − trained. The state lives in this object's own kernel memory, so other SIMD users may run
 * between steps; one object serves one run at a time (a new `begin` discards the previous run).
 */
export class SoftmaxSgd {
  /** Row stride of W and X in the kernel memory: inputDim rounded up to a multiple of 4. */
  private readonly kp: number;
  /** Class count rounded up to even (the kernels take output rows in pairs). */
  private readonly cp: number;
  private jsHeap: Float32Array = new Float32Array(0);
  /** A private kernel instance (created on first use): its memory holds W across steps. */
  private kernel: SimdGemm | null | undefined = undefined;
  private heap: Float32Array = new Float32Array(0);
  private simd = false;
  private data: DenseExamples | null = null;
  private n = 0;
  private maxBatch = 0;
  private xOff = 0;
  private logitOff = 0;
  private dzOff = 0;
  private stageOff = 0;
  private readonly bias: Float32Array;
  private readonly biasGrad: Float64Array;
  private labels = new Int32Array(0);

  constructor(
    readonly inputDim: number,
    readonly numClasses: number,
  ) {
    this.kp = (inputDim + 3) & ~3;
    this.cp = numClasses + (numClasses & 1);
    this.bias = new Float32Array(numClasses);
    this.biasGrad = new Float64Array(numClasses);
  }

  /** Parameters in the model's layout: W (numClasses × inputDim, row-major), then b. */
  get numParams(): number {
    return this.inputDim * this.numClasses + this.numClasses;
  }

  /** Loads `params` and the client's data; batches will hold at most `maxBatch` rows. */
  begin(params: Float32Array, data: DenseExamples, maxBatch: number): void {
    const k = this.inputDim;
    const c = this.numClasses;
    const { kp, cp } = this;
    if (params.length !== this.numParams)
      throw new ShapeError(`params have ${params.length} entries, softmax regression has ${this.numParams}`);
    if (data.dim !== k) throw new ShapeError(`data has ${data.dim} features, the model expects ${k}`);
    if (data.x.length < data.n * k || data.y.length < data.n)
      throw new ShapeError(`${data.n} examples need ${data.n * k} features and ${data.n} labels`);
    const n = data.n;
    const mb = Math.max(1, Math.min(maxBatch, n));
    const mb4 = (mb + 3) & ~3;
    this.data = data;
    this.n = n;
    this.maxBatch = mb;
    // Layout (float offsets): W (cp×kp) | X: n arranged rows + 4 zero rows, so a batch's row count can
    // be rounded up to the forward kernel's block of 4 | logits (mb4×cp) | scaled dZ (mb×cp) | the
    // client's rows in their original order (n×k, staging for arrange).
    this.xOff = cp * kp;
    this.logitOff = this.xOff + (n + 4) * kp;
    this.dzOff = this.logitOff + mb4 * cp;
    this.stageOff = this.dzOff + mb * cp;
    // The staging area also holds a copy of the starting weights in finishDelta: max(n, c) rows.
    const total = this.stageOff + Math.max(n, c) * k;
    if (simdKernelsActive() && this.kernel === undefined) this.kernel = createSimdGemm();
    this.simd = simdKernelsActive() && this.kernel != null;
    if (this.simd) {
      const g = this.kernel as SimdGemm;
      g.reserve(total);
      this.heap = g.heap;
    } else {
      if (this.jsHeap.length < total) this.jsHeap = new Float32Array(total);
      this.heap = this.jsHeap;
    }
    const heap = this.heap;
    // Zero everything the kernels read as padding: W's padded columns/rows, X's tail rows and padded
    // columns, and dZ's padded class columns.
    heap.fill(0, 0, this.stageOff);
    if (k === kp) heap.set(params.subarray(0, c * k));
    else
      for (let j = 0; j < c; j++) {
        const src = j * k;
        const dst = j * kp;
        for (let t = 0; t < k; t++) heap[dst + t] = params[src + t] as number;
      }
    this.bias.set(params.subarray(c * k, c * k + c));
    if (this.labels.length < n) this.labels = new Int32Array(n);
  }

  /** Copies rows order[0..n) (a permutation of the client's rows) into the kernel memory, in order. */
  arrange(order: Int32Array): void {
    const data = this.data;
    if (data === null) throw new OrchardError('INVALID_STATE', 'SoftmaxSgd.arrange before begin');
    const { n, kp, heap, labels, xOff, stageOff } = this;
    const k = this.inputDim;
    const c = this.numClasses;
    const y = data.y;
    // One bulk copy into the staging area, then row moves inside the same memory: memcpy-speed, where
    // an element-by-element gather from the client's array costs ~3x more.
    heap.set(data.x.subarray(0, n * k), stageOff);
    for (let r = 0; r < n; r++) {
      const i = order[r] as number;
      if (!(i >= 0 && i < n))
        throw new OrchardError('INVALID_ARGUMENT', `row index ${i} is outside [0, ${n})`);
      const label = y[i] as number;
      if (!(label >= 0 && label < c))
        throw new OrchardError('DATA_INVALID', `label ${label} of example ${i} is outside [0, ${c})`);
      labels[r] = label;
      const from = stageOff + i * k;
      heap.copyWithin(xOff + r * kp, from, from + k);
    }
  }

  /**
   * One SGD step on the arranged rows [start, end): W, b −= lr·∇(mean cross-entropy). Returns the
   * batch's mean loss at the parameters before the step.
   */
  step(start: number, end: number, lr: number): number {
    const m = end - start;
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && m >= 1 && end <= this.n))
      throw new OrchardError('INVALID_ARGUMENT', `row range [${start}, ${end}) is not within 0..${this.n}`);
    if (m > this.maxBatch)
      throw new OrchardError('INVALID_ARGUMENT', `batch of ${m} rows exceeds maxBatch ${this.maxBatch}`);
    const { kp, cp, heap, bias, biasGrad, labels } = this;
    const c = this.numClasses;
    const xBatch = this.xOff + start * kp;
    const logitOff = this.logitOff;
    const dzOff = this.dzOff;
    const m4 = (m + 3) & ~3;
    if (this.simd) (this.kernel as SimdGemm).gemmNT(logitOff, xBatch, 0, m4, cp, kp);
    else gemmNTScalar(heap, logitOff, xBatch, 0, m, cp, kp);
    const coef = -lr / m;
    biasGrad.fill(0);
    let total = 0;
    for (let e = 0; e < m; e++) {
      const lo = logitOff + e * cp;
      const dz = dzOff + e * cp;
      const y = labels[start + e] as number;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < c; j++) {
        // Bias added to the float32 product and rounded, as the generic dense layer stores logits.
        const z = Math.fround((heap[lo + j] as number) + (bias[j] as number));
        heap[lo + j] = z;
        if (z > max) max = z;
      }
      let sum = 0;
      for (let j = 0; j < c; j++) {
        const ez = Math.exp((heap[lo + j] as number) - max);
        heap[dz + j] = ez;
        sum += ez;
      }
      const inv = 1 / sum;
      for (let j = 0; j < c; j++) {
        const g = (heap[dz + j] as number) * inv - (j === y ? 1 : 0);
        biasGrad[j] = (biasGrad[j] as number) + g;
        heap[dz + j] = coef * g;
      }
      total += Math.log(sum) - ((heap[lo + y] as number) - max);
    }
    // W += (−lr/m)·(P − Y)ᵀ·X, accumulated in place (padded dZ columns are zero, so padded W rows stay 0).
    if (this.simd) (this.kernel as SimdGemm).gemmTNAcc(0, dzOff, xBatch, m, cp, kp);
    else gemmTNAccScalar(heap, 0, dzOff, xBatch, m, cp, kp);
    for (let j = 0; j < c; j++) bias[j] = (bias[j] as number) + coef * (biasGrad[j] as number);
    return total / m;
  }

  /** Writes start − (current parameters) into `delta`, both in the model's layout, and ends the run. */
  finishDelta(start: Float32Array, delta: Float32Array): void {
    const k = this.inputDim;
    const c = this.numClasses;
    const { kp, heap, bias } = this;
    if (start.length !== this.numParams || delta.length !== this.numParams)
      throw new ShapeError(
        `start/delta have ${start.length}/${delta.length} entries, softmax regression has ${this.numParams}`,
      );
    if (this.simd && k === kp) {
      // Unpadded rows: W is one contiguous block, so start − W is one SIMD pass (float32 a + (−1)·b
      // rounds exactly like a − b) between two bulk copies.
      const ck = c * k;
      const at = this.stageOff;
      heap.set(start.subarray(0, ck), at);
      (this.kernel as SimdGemm).axpy(at, 0, -1, ck);
      delta.set(heap.subarray(at, at + ck));
    } else
      for (let j = 0; j < c; j++) {
        const src = j * kp;
        const dst = j * k;
        for (let t = 0; t < k; t++) delta[dst + t] = (start[dst + t] as number) - (heap[src + t] as number);
      }
    const bo = c * k;
    for (let j = 0; j < c; j++) delta[bo + j] = (start[bo + j] as number) - (bias[j] as number);
    this.data = null;
  }
}
