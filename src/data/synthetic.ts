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

/** The generator behind `syntheticDataset`, also used directly by tests and benchmarks. */
export class SyntheticGenerator {
  readonly opts: SyntheticOptions;
  /** Per-feature standard deviation j^(−0.6), the square root of Σ_jj. */
  private readonly featureStd: Float64Array;
  // Scratch for the current client's model: reused across calls so generation allocates only outputs.
  private readonly w: Float64Array;
  private readonly b: Float64Array;
  private readonly v: Float64Array;
  private readonly best = new Int32Array(BLOCK);
  private readonly bestValue = new Float64Array(BLOCK);

  constructor(opts: SyntheticOptions) {
    validate(opts);
    this.opts = opts;
    this.featureStd = new Float64Array(opts.dim);
    for (let j = 0; j < opts.dim; j++) this.featureStd[j] = (j + 1) ** -0.6;
    this.w = new Float64Array(opts.numClasses * opts.dim);
    this.b = new Float64Array(opts.numClasses);
    this.v = new Float64Array(opts.dim);
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
    normals.fill(w);
    for (let i = 0; i < w.length; i++) w[i] = u + (w[i] as number);
    normals.fill(b);
    for (let c = 0; c < b.length; c++) b[c] = u + (b[c] as number);
    normals.fill(v);
    for (let j = 0; j < v.length; j++) v[j] = bigB + (v[j] as number);
  }

  /** Writes n examples drawn with `stream` under the current model into x/y starting at row `row`. */
  private drawExamples(stream: Rng, n: number, x: Float32Array, y: Int32Array, row: number): void {
    const { dim, numClasses } = this.opts;
    const w = this.w;
    const b = this.b;
    const v = this.v;
    const std = this.featureStd;
    new NormalStream(stream).fillRows(x, row * dim, n, v, std);
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

  /** Client k's training examples: identical on every call. */
  client(k: number): DenseExamples {
    const n = this.clientSize(k);
    const x = new Float32Array(n * this.opts.dim);
    const y = new Int32Array(n);
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
