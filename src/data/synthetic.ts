/**
 * LEAF / FedProx Synthetic(α, β) (Li et al., "Federated Optimization in Heterogeneous Networks", 2020;
 * Caldas et al., LEAF, 2018). For client k:
 *   u_k ~ N(0, α²), W_k[c][j] ~ N(u_k, 1), b_k[c] ~ N(u_k, 1)       (model heterogeneity)
 *   B_k ~ N(0, β²), v_k[j] ~ N(B_k, 1)                                (feature heterogeneity)
 *   x ~ N(v_k, Σ), Σ diagonal with Σ_jj = j^(−1.2), j = 1..dim
 *   y = argmax_c (W_k x + b_k)_c
 * As in the reference generator (which calls numpy's normal(0, alpha)), α and β are standard deviations.
 *
 * Clients are generated lazily: everything about client k is a pure function of (seed, k) through
 * `Rng.derive`, so a population of a million clients costs no memory and `client(k)` returns identical
 * data on every call. Labels are computed from the float32-rounded features that are returned, so they are
 * exactly the argmax of the returned x under the client's model.
 */
import { invalidArgument } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { simdKernelsActive } from '../nn/layers.ts';
import { createSimdGemm, type SimdGemm } from '../nn/simd.ts';
import { NormalStream } from './gaussian.ts';
import type { DenseExamples, FederatedDataset } from './types.ts';

export interface SyntheticOptions {
  /** Model heterogeneity (std of u_k). */
  readonly alpha: number;
  /** Feature heterogeneity (std of B_k). */
  readonly beta: number;
  readonly numClients: number;
  readonly dim: number;
  readonly numClasses: number;
  /** Fixed client size, or the mean client size when `examplesSigma` > 0. */
  readonly examplesPerClient: number;
  /** Log-normal spread of client sizes; 0 gives every client `examplesPerClient` examples. */
  readonly examplesSigma: number;
  readonly testSize: number;
  readonly seed: number;
}

/** Stream ids under Rng.derive(seed, k, ·); plain derive(seed, k) draws the client's model. */
const SIZE_STREAM = 1;
const TRAIN_STREAM = 3;
/** Rows per block in the label computation. */
const BLOCK = 4;
const TEST_STREAM = 2;
/** Rows per float32 screening pass (bounds the kernel memory for large clients). */
const SCREEN_ROWS = 256;
/** Unit roundoff of float32. */
const U32 = 2 ** -24;
/** Log-normal sizes are capped so one unlucky client cannot hold an unbounded share of memory or time. */
export const MAX_SIZE_FACTOR = 100;
/** The test set is drawn from this many clients, evenly spaced over [0, numClients). */
export const TEST_CLIENTS = 100;

/** A client's generating model: what the debug accessor exposes for independent label checks. */
export interface SyntheticClientModel {
  /** numClasses × dim, row-major. */
  readonly w: Float64Array;
  readonly b: Float64Array;
  /** Feature mean v_k. */
  readonly v: Float64Array;
}

function validate(o: SyntheticOptions): void {
  const checks: Array<[boolean, string]> = [
    [Number.isFinite(o.alpha) && o.alpha >= 0, 'alpha must be a finite number >= 0'],
    [Number.isFinite(o.beta) && o.beta >= 0, 'beta must be a finite number >= 0'],
    [Number.isInteger(o.numClients) && o.numClients >= 1, 'numClients must be an integer >= 1'],
    [Number.isInteger(o.dim) && o.dim >= 1, 'dim must be an integer >= 1'],
    [Number.isInteger(o.numClasses) && o.numClasses >= 2, 'numClasses must be an integer >= 2'],
    [
      Number.isInteger(o.examplesPerClient) && o.examplesPerClient >= 1,
      'examplesPerClient must be an integer >= 1',
    ],
    [Number.isFinite(o.examplesSigma) && o.examplesSigma >= 0, 'examplesSigma must be a finite number >= 0'],
    [Number.isInteger(o.testSize) && o.testSize >= 1, 'testSize must be an integer >= 1'],
    [Number.isFinite(o.seed), 'seed must be a finite number'],
  ];
  for (const [ok, message] of checks) if (!ok) throw invalidArgument(`synthetic dataset: ${message}`);
}

/**
 * Labels y = argmax_c (W x + b)_c of float32 feature rows under a float64 model, ties to the lower
 * class; every label equals the float64 sum b_c + Σ_j w_cj x_j taken in order j = 0, 1, … . With Wasm
 * SIMD kernels active, a float32 screen decides the rows whose winner is certain (see `screen`).
 */
export class ArgmaxLabeler {
  private readonly best = new Int32Array(BLOCK);
  private readonly bestValue = new Float64Array(BLOCK);
  /** Private SIMD kernel for the float32 screen (created on first use; null without Wasm SIMD). */
  private kernel: SimdGemm | null | undefined = undefined;

  constructor(
    readonly dim: number,
    readonly numClasses: number,
  ) {}

  /** Writes labels of rows [row, row + n) of x (dim features each) into y at the same rows. */
  label(w: Float64Array, b: Float64Array, x: Float32Array, row: number, n: number, y: Int32Array): void {
    if (simdKernelsActive() && this.kernel === undefined) this.kernel = createSimdGemm();
    if (simdKernelsActive() && this.kernel != null) this.screen(this.kernel, w, b, x, row, n, y);
    else this.exact(w, b, x, row, n, y);
  }

  /**
   * Labels through a float32 SIMD product with a rigorous error bound, falling back to the exact
   * float64 sum for rows where the bound cannot separate the top two classes, so every label equals
   * what `exact` gives. Per class c and row x (k = dim features, u = 2^−24): rounding W to
   * float32 and any-order float32 dot products err by at most (γ_k(1 + u) + u)·Σ_j |w_cj x_j|
   * (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), and Σ_j |w_cj x_j| ≤ max|W|·‖x‖₁;
   * the float64 reference sum errs by at most γ_{k+1} (float64) of |b_c| + Σ_j |w_cj x_j|. When the
   * float32 winner leads the runner-up by more than twice the combined bound, it is the float64
   * argmax too.
   */
  private screen(
    g: SimdGemm,
    w: Float64Array,
    b: Float64Array,
    x: Float32Array,
    row: number,
    n: number,
    y: Int32Array,
  ): void {
    const { dim: k, numClasses: c } = this;
    const kp = (k + 3) & ~3;
    const cp = c + (c & 1);
    const chunk = Math.min(n, SCREEN_ROWS);
    const chunk4 = (chunk + 3) & ~3;
    const xOff = cp * kp;
    const outOff = xOff + chunk4 * kp;
    g.reserve(outOff + chunk4 * cp);
    const heap = g.heap;
    heap.fill(0, 0, outOff);
    // W rounded to float32 (a converting bulk copy when rows need no padding).
    if (k === kp) heap.set(w);
    else for (let j = 0; j < c; j++) for (let t = 0; t < k; t++) heap[j * kp + t] = w[j * k + t] as number;
    // max |W| with four independent running maxima (one would be a serial dependency chain).
    let m0 = 0;
    let m1 = 0;
    let m2 = 0;
    let m3 = 0;
    const wn = c * k;
    let i = 0;
    for (; i + 4 <= wn; i += 4) {
      m0 = Math.max(m0, Math.abs(w[i] as number));
      m1 = Math.max(m1, Math.abs(w[i + 1] as number));
      m2 = Math.max(m2, Math.abs(w[i + 2] as number));
      m3 = Math.max(m3, Math.abs(w[i + 3] as number));
    }
    for (; i < wn; i++) m0 = Math.max(m0, Math.abs(w[i] as number));
    const wMax = Math.max(m0, m1, m2, m3);
    let bMax = 0;
    for (let j = 0; j < c; j++) bMax = Math.max(bMax, Math.abs(b[j] as number));
    const gammaK = (k * U32) / (1 - k * U32);
    // Float64 rounding, generously: the reference sum of k + 1 terms errs by at most γ_{k+1} ≤
    // (k + 2)·2^−53 of |b_c| + Σ_j |w_cj x_j|, and adding b_c to the float32 product once more.
    const eps64 = (k + 4) * 2 ** -52;
    const relative = gammaK * (1 + U32) + U32 + eps64;
    for (let r0 = 0; r0 < n; r0 += SCREEN_ROWS) {
      const rows = Math.min(SCREEN_ROWS, n - r0);
      const rows4 = (rows + 3) & ~3;
      const src = (row + r0) * k;
      if (k === kp) heap.set(x.subarray(src, src + rows * k), xOff);
      else
        for (let r = 0; r < rows; r++)
          for (let t = 0; t < k; t++) heap[xOff + r * kp + t] = x[src + r * k + t] as number;
      heap.fill(0, xOff + rows * kp, xOff + rows4 * kp);
      g.gemmNT(outOff, xOff, 0, rows4, cp, kp);
      for (let r = 0; r < rows; r++) {
        const o = outOff + r * cp;
        let best = 0;
        let bestValue = Number.NEGATIVE_INFINITY;
        let second = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < c; j++) {
          const logit = (heap[o + j] as number) + (b[j] as number);
          if (logit > bestValue) {
            second = bestValue;
            bestValue = logit;
            best = j;
          } else if (logit > second) second = logit;
        }
        const xr = src + r * k;
        // Four partial sums: one running sum would be a chain of dependent adds (latency-bound).
        let l1a = 0;
        let l1b = 0;
        let l1c = 0;
        let l1d = 0;
        let t = 0;
        for (; t + 4 <= k; t += 4) {
          l1a += Math.abs(x[xr + t] as number);
          l1b += Math.abs(x[xr + t + 1] as number);
          l1c += Math.abs(x[xr + t + 2] as number);
          l1d += Math.abs(x[xr + t + 3] as number);
        }
        for (; t < k; t++) l1a += Math.abs(x[xr + t] as number);
        // Each partial sum rounds up by at most a factor (1 + 2^−52) per add: 1e-12 more covers it.
        const l1 = (l1a + l1b + (l1c + l1d)) * (1 + 1e-12);
        const bound = relative * wMax * l1 + eps64 * bMax;
        // 2.000001 rather than 2 absorbs the rounding of the margin and of the bound itself. The
        // comparison is false for NaN margins too, which then take the exact path.
        y[row + r0 + r] = bestValue - second > 2.000001 * bound ? best : this.exactLabel(w, b, x, xr);
      }
    }
  }

  /** The float64 argmax of W x + b for the row at x[xr ..], summed in the same order as `exact`. */
  private exactLabel(w: Float64Array, b: Float64Array, x: Float32Array, xr: number): number {
    const { dim: k, numClasses: c } = this;
    let best = 0;
    let bestValue = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < c; j++) {
      let s = b[j] as number;
      for (let t = 0; t < k; t++) s += (w[j * k + t] as number) * (x[xr + t] as number);
      if (s > bestValue) {
        bestValue = s;
        best = j;
      }
    }
    return best;
  }

  /** Labels for rows [row, row + n) by the float64 sums W x + b (ties go to the lower class). */
  exact(w: Float64Array, b: Float64Array, x: Float32Array, row: number, n: number, y: Int32Array): void {
    const { dim, numClasses } = this;
    // Rows go four at a time so each weight load feeds four independent accumulators; this halves the
    // cost of W·x, the dominant term, against a row-at-a-time dot product. Labels read the float32
    // features back, so they are exactly the argmax for the data we return.
    for (let r0 = 0; r0 < n; r0 += BLOCK) {
      const rows = Math.min(BLOCK, n - r0);
      const x0 = (row + r0) * dim;
      // A partial block reuses its last row for the missing ones; their labels are discarded.
      const x1 = x0 + Math.min(1, rows - 1) * dim;
      const x2 = x0 + Math.min(2, rows - 1) * dim;
      const x3 = x0 + Math.min(3, rows - 1) * dim;
      const best = this.best;
      const bestValue = this.bestValue;
      bestValue.fill(Number.NEGATIVE_INFINITY);
      // Two classes × four rows per pass: eight independent sums, each weight and feature load used
      // four and two times.
      for (let c = 0; c < numClasses; c += 2) {
        const wa = c * dim;
        const hasB = c + 1 < numClasses;
        const wb = hasB ? wa + dim : wa;
        const ba = b[c] as number;
        const bb = hasB ? (b[c + 1] as number) : ba;
        let a0 = ba;
        let a1 = ba;
        let a2 = ba;
        let a3 = ba;
        let b0 = bb;
        let b1 = bb;
        let b2 = bb;
        let b3 = bb;
        for (let j = 0; j < dim; j++) {
          const wA = w[wa + j] as number;
          const wB = w[wb + j] as number;
          const v0 = x[x0 + j] as number;
          const v1 = x[x1 + j] as number;
          const v2 = x[x2 + j] as number;
          const v3 = x[x3 + j] as number;
          a0 += wA * v0;
          a1 += wA * v1;
          a2 += wA * v2;
          a3 += wA * v3;
          b0 += wB * v0;
          b1 += wB * v1;
          b2 += wB * v2;
          b3 += wB * v3;
        }
        this.offer(0, c, a0);
        this.offer(1, c, a1);
        this.offer(2, c, a2);
        this.offer(3, c, a3);
        if (hasB) {
          this.offer(0, c + 1, b0);
          this.offer(1, c + 1, b1);
          this.offer(2, c + 1, b2);
          this.offer(3, c + 1, b3);
        }
      }
      for (let q = 0; q < rows; q++) y[row + r0 + q] = best[q] as number;
    }
  }

  /** Keeps the first class with the highest logit for block row q (ties go to the lower class). */
  private offer(q: number, c: number, logit: number): void {
    if (logit > (this.bestValue[q] as number)) {
      this.bestValue[q] = logit;
      this.best[q] = c;
    }
  }
}

/** The generator behind `syntheticDataset`, also used directly by tests and benchmarks. */
export class SyntheticGenerator {
  readonly opts: SyntheticOptions;
  /** Per-feature standard deviation j^(−0.6), the square root of Σ_jj. */
  private readonly featureStd: Float64Array;
  // Scratch for the current client's model: reused across calls so generation allocates only outputs.
  private readonly w: Float64Array;
  private readonly b: Float64Array;
  private readonly v: Float64Array;
  private readonly labeler: ArgmaxLabeler;

  constructor(opts: SyntheticOptions) {
    validate(opts);
    this.opts = opts;
    this.featureStd = new Float64Array(opts.dim);
    for (let j = 0; j < opts.dim; j++) this.featureStd[j] = (j + 1) ** -0.6;
    this.w = new Float64Array(opts.numClasses * opts.dim);
    this.b = new Float64Array(opts.numClasses);
    this.v = new Float64Array(opts.dim);
    this.labeler = new ArgmaxLabeler(opts.dim, opts.numClasses);
  }

  private checkClient(k: number): void {
    if (!Number.isInteger(k) || k < 0 || k >= this.opts.numClients)
      throw invalidArgument(`client index ${k} outside [0, ${this.opts.numClients})`);
  }

  /** Number of examples of client k: one short rng stream, no data generated. */
  clientSize(k: number): number {
    this.checkClient(k);
    const { examplesPerClient: mean, examplesSigma: sigma } = this.opts;
    if (sigma === 0) return mean;
    // exp(σz − σ²/2) has mean 1, so sizes average `examplesPerClient` before rounding and capping.
    const z = Rng.derive(this.opts.seed, k, SIZE_STREAM).normal();
    const size = Math.round(mean * Math.exp(sigma * z - (sigma * sigma) / 2));
    return Math.min(Math.max(size, 1), mean * MAX_SIZE_FACTOR);
  }

  /** Draws client k's model (u_k, W_k, b_k, B_k, v_k) into the scratch buffers. */
  private drawModel(k: number): void {
    const normals = new NormalStream(Rng.derive(this.opts.seed, k));
    const { alpha, beta } = this.opts;
    const w = this.w;
    const b = this.b;
    const v = this.v;
    const u = alpha * normals.normal();
    const bigB = beta * normals.normal();
    normals.fill(w, 0, w.length, u);
    normals.fill(b, 0, b.length, u);
    normals.fill(v, 0, v.length, bigB);
  }

  /** Writes n examples drawn with `stream` under the current model into x/y starting at row `row`. */
  private drawExamples(stream: Rng, n: number, x: Float32Array, y: Int32Array, row: number): void {
    new NormalStream(stream).fillRows(x, row * this.opts.dim, n, this.v, this.featureStd);
    // Labels read the float32 features back, so they are exactly the argmax for the data we return.
    this.labeler.label(this.w, this.b, x, row, n, y);
  }

  /** Client k's training examples: identical on every call. */
  client(k: number): DenseExamples {
    const n = this.clientSize(k);
    // One backing store for features and labels: each typed-array allocation of this size costs about
    // a microsecond in V8, a noticeable share of a client's cost in the simulator. x and y are disjoint
    // views of it (y's bytes start after x's).
    const store = new ArrayBuffer(n * this.opts.dim * 4 + n * 4);
    const x = new Float32Array(store, 0, n * this.opts.dim);
    const y = new Int32Array(store, n * this.opts.dim * 4, n);
    this.drawModel(k);
    this.drawExamples(Rng.derive(this.opts.seed, k, TRAIN_STREAM), n, x, y, 0);
    return { kind: 'dense', n, dim: this.opts.dim, x, y };
  }

  /** Debug/test accessor: copies of client k's generating W_k, b_k, v_k. */
  clientModel(k: number): SyntheticClientModel {
    this.checkClient(k);
    this.drawModel(k);
    return { w: new Float64Array(this.w), b: new Float64Array(this.b), v: new Float64Array(this.v) };
  }

  /** Clients that supply the test set: min(numClients, TEST_CLIENTS) indices evenly spaced. */
  testClients(): number[] {
    const m = Math.min(this.opts.numClients, TEST_CLIENTS);
    const out: number[] = [];
    for (let i = 0; i < m; i++) out.push(Math.floor((i * this.opts.numClients) / m));
    return out;
  }

  /**
   * Held-out examples: `testSize` fresh draws split as evenly as possible over `testClients()`, each from
   * that client's own model (its W_k, b_k, v_k) but a separate rng stream, so they never repeat training rows.
   */
  testSet(): DenseExamples {
    const { testSize, dim, seed } = this.opts;
    const clients = this.testClients();
    const x = new Float32Array(testSize * dim);
    const y = new Int32Array(testSize);
    let row = 0;
    for (let i = 0; i < clients.length; i++) {
      const k = clients[i] as number;
      const share =
        Math.floor(((i + 1) * testSize) / clients.length) - Math.floor((i * testSize) / clients.length);
      if (share === 0) continue;
      this.drawModel(k);
      this.drawExamples(Rng.derive(seed, k, TEST_STREAM), share, x, y, row);
      row += share;
    }
    return { kind: 'dense', n: testSize, dim, x, y };
  }
}

/** LEAF Synthetic(α, β) as a lazily generated federated dataset. */
export function syntheticDataset(opts: SyntheticOptions): FederatedDataset {
  const gen = new SyntheticGenerator(opts);
  let test: DenseExamples | undefined;
  return {
    name: `synthetic(${opts.alpha},${opts.beta})`,
    numClients: opts.numClients,
    numClasses: opts.numClasses,
    inputKind: 'dense',
    inputDim: opts.dim,
    clientSize: (k) => gen.clientSize(k),
    client: (k) => gen.client(k),
    testSet: () => {
      test ??= gen.testSet();
      return test;
    },
  };
}
