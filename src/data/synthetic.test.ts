import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { setSimdKernels } from '../nn/layers.ts';
import { NormalStream } from './gaussian.ts';
import { ArgmaxLabeler, MAX_SIZE_FACTOR, SyntheticGenerator, syntheticDataset } from './synthetic.ts';
import type { DenseExamples, Examples } from './types.ts';

function dense(e: Examples): DenseExamples {
  assert.equal(e.kind, 'dense');
  return e as DenseExamples;
}

const base = {
  alpha: 1,
  beta: 1,
  numClients: 1000,
  dim: 60,
  numClasses: 10,
  examplesPerClient: 20,
  examplesSigma: 0,
  testSize: 500,
  seed: 42,
};

test('ziggurat normals: moments and quantiles match N(0,1)', () => {
  const s = new NormalStream(new Rng(3));
  const n = 400_000;
  const z = new Float64Array(n);
  s.fill(z);
  let m = 0;
  let v = 0;
  let k4 = 0;
  for (const x of z) {
    m += x;
    v += x * x;
    k4 += x ** 4;
  }
  m /= n;
  v /= n;
  k4 /= n;
  assert.ok(Math.abs(m) < 0.01, `mean ${m}`);
  assert.ok(Math.abs(v - 1) < 0.01, `variance ${v}`);
  assert.ok(Math.abs(k4 - 3) < 0.06, `fourth moment ${k4}`);
  // Published standard normal tail probabilities: P(X > 1) = 0.158655, P(X > 2) = 0.0227501,
  // P(X > 3) = 0.0013499 (tail beyond the ziggurat base at 3.44 is exercised too).
  const frac = (t: number) => z.filter((x) => x > t).length / n;
  assert.ok(Math.abs(frac(1) - 0.158655) < 0.003);
  assert.ok(Math.abs(frac(2) - 0.0227501) < 0.001);
  assert.ok(Math.abs(frac(3) - 0.0013499) < 0.0003);
  assert.ok(Math.abs(z.filter((x) => x < -3.5).length / n - 0.000232629) < 0.0001);
  // normal() draws one at a time: same distribution.
  const one = new NormalStream(new Rng(9));
  let v1 = 0;
  for (let i = 0; i < 100_000; i++) v1 += one.normal() ** 2;
  assert.ok(Math.abs(v1 / 100_000 - 1) < 0.02);
  // Same seed, same fill.
  const a = new Float64Array(5000);
  const b = new Float64Array(5000);
  new NormalStream(new Rng(9)).fill(a);
  new NormalStream(new Rng(9)).fill(b);
  assert.deepEqual(a, b);
});

test('client(k) is deterministic, distinct across clients and seeds', () => {
  const ds = syntheticDataset(base);
  const a = dense(ds.client(17));
  const b = ds.client(17);
  assert.deepEqual(a, b);
  const other = dense(ds.client(18));
  assert.notDeepEqual(a.x, other.x);
  const ds2 = syntheticDataset({ ...base, seed: 43 });
  assert.notDeepEqual(dense(ds2.client(17)).x, a.x);
  // Interleaving other calls (shared scratch buffers) must not change results.
  ds.testSet();
  ds.client(999);
  assert.deepEqual(ds.client(17), a);
  assert.equal(a.n, 20);
  assert.equal(a.x.length, 20 * 60);
  assert.equal(ds.clientSize(17), 20);
});

test('labels are the argmax of W x + b recomputed independently in float64', () => {
  const gen = new SyntheticGenerator({ ...base, examplesPerClient: 37 });
  for (const k of [0, 5, 999]) {
    const data = gen.client(k);
    const { w, b } = gen.clientModel(k);
    for (let r = 0; r < data.n; r++) {
      let best = -1;
      let bestValue = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < 10; c++) {
        let s = b[c] as number;
        for (let j = 0; j < 60; j++) s += (w[c * 60 + j] as number) * (data.x[r * 60 + j] as number);
        if (s > bestValue) {
          bestValue = s;
          best = c;
        }
      }
      assert.equal(data.y[r], best, `client ${k} row ${r}`);
    }
  }
});

test('feature statistics follow v_k and Σ_jj = j^-1.2', () => {
  const gen = new SyntheticGenerator({ ...base, examplesPerClient: 20000, numClients: 3 });
  const data = gen.client(1);
  const { v } = gen.clientModel(1);
  for (const j of [0, 9, 59]) {
    let m = 0;
    let s2 = 0;
    for (let r = 0; r < data.n; r++) {
      const x = data.x[r * 60 + j] as number;
      m += x;
      s2 += x * x;
    }
    m /= data.n;
    const variance = s2 / data.n - m * m;
    const expected = (j + 1) ** -1.2;
    assert.ok(Math.abs(m - (v[j] as number)) < 0.05, `mean of feature ${j}`);
    assert.ok(
      Math.abs(variance / expected - 1) < 0.05,
      `variance of feature ${j}: ${variance} vs ${expected}`,
    );
  }
});

test('alpha = beta = 0: all clients share u = B = 0, so W and v entries are N(0,1) overall', () => {
  const gen = new SyntheticGenerator({ ...base, alpha: 0, beta: 0 });
  let sum = 0;
  let count = 0;
  for (let k = 0; k < 200; k++) {
    const { v } = gen.clientModel(k);
    for (const x of v) {
      sum += x;
      count++;
    }
  }
  assert.ok(Math.abs(sum / count) < 0.03);
  // Large alpha spreads client means: per-client average of W varies with std ≈ alpha.
  const wide = new SyntheticGenerator({ ...base, alpha: 5 });
  const means: number[] = [];
  for (let k = 0; k < 300; k++) {
    const { w } = wide.clientModel(k);
    means.push(w.reduce((a, x) => a + x, 0) / w.length);
  }
  const sd = Math.sqrt(means.reduce((a, x) => a + x * x, 0) / means.length);
  assert.ok(sd > 4 && sd < 6, `std of client means ${sd}`);
});

test('log-normal sizes: deterministic, >= 1, capped, mean near examplesPerClient', () => {
  const ds = syntheticDataset({ ...base, examplesSigma: 1, numClients: 20000 });
  let total = 0;
  let distinct = new Set<number>();
  for (let k = 0; k < 20000; k++) {
    const s = ds.clientSize(k);
    assert.ok(s >= 1 && s <= 20 * MAX_SIZE_FACTOR);
    total += s;
    distinct.add(s);
  }
  assert.ok(Math.abs(total / 20000 - 20) < 1, `mean size ${total / 20000}`);
  assert.ok(distinct.size > 20);
  distinct = new Set();
  assert.equal(ds.client(123).n, ds.clientSize(123));
  assert.equal(ds.clientSize(123), ds.clientSize(123));
});

test('a million lazy clients cost almost no memory', () => {
  globalThis.gc?.();
  const before = process.memoryUsage().heapUsed;
  const ds = syntheticDataset({ ...base, numClients: 1_000_000 });
  for (const k of [0, 1, 500_000, 999_999]) assert.equal(ds.client(k).n, 20);
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 4 * 1024 * 1024, `heap grew ${grown} bytes`);
  assert.equal(ds.numClients, 1_000_000);
});

test('test set: requested size, deterministic, not a copy of training rows', () => {
  const ds = syntheticDataset(base);
  const t1 = dense(ds.testSet());
  const t2 = syntheticDataset(base).testSet();
  assert.equal(t1.n, 500);
  assert.deepEqual(t1, t2);
  const train0 = dense(ds.client(0));
  assert.notDeepEqual(t1.x.subarray(0, 60), train0.x.subarray(0, 60));
  const labels = new Set(t1.y);
  assert.ok(labels.size >= 5);
});

test('bad options and client indices throw typed errors', () => {
  assert.throws(() => syntheticDataset({ ...base, numClasses: 1 }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => syntheticDataset({ ...base, alpha: -1 }), { code: 'INVALID_ARGUMENT' });
  const ds = syntheticDataset(base);
  assert.throws(() => ds.client(1000), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => ds.clientSize(-1), { code: 'INVALID_ARGUMENT' });
});

/** Float64 argmax of b + Σ_j w_cj x_j summed in order j = 0, 1, …, ties to the lower class. */
function naiveLabel(w: Float64Array, b: Float64Array, x: Float32Array, r: number, dim: number): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < b.length; c++) {
    let s = b[c] as number;
    for (let j = 0; j < dim; j++) s += (w[c * dim + j] as number) * (x[r * dim + j] as number);
    if (s > bestValue) {
      bestValue = s;
      best = c;
    }
  }
  return best;
}

test('ArgmaxLabeler: near-ties and exact ties match the float64 argmax, SIMD screen on and off', () => {
  const dim = 7;
  const classes = 5;
  const rng = new Rng(11);
  const w = Float64Array.from({ length: classes * dim }, () => rng.normal());
  const b = Float64Array.from({ length: classes }, () => rng.normal());
  // Classes 1 and 2 share their weights and get biases one ulp apart (far below float32 resolution),
  // classes 3 and 4 are exact copies; large biases make these pairs win, so the float32 screen cannot
  // decide and only the float64 path separates them.
  for (let j = 0; j < dim; j++) {
    w[2 * dim + j] = w[dim + j] as number;
    w[4 * dim + j] = w[3 * dim + j] as number;
  }
  b[1] = 100;
  b[2] = 100 + 2 ** -46;
  b[3] = 99.5;
  b[4] = 99.5;
  const n = 41;
  const x = Float32Array.from({ length: n * dim }, () => rng.normal());
  const expected = Int32Array.from({ length: n }, (_, r) => naiveLabel(w, b, x, r, dim));
  assert.ok(expected.includes(2) || expected.includes(1));
  assert.ok(expected.includes(3));
  assert.ok(!expected.includes(4), 'exact ties go to the lower class');
  try {
    for (const simd of [true, false]) {
      setSimdKernels(simd);
      const labeler = new ArgmaxLabeler(dim, classes);
      // Rows written at an offset into a longer array, as the test-set builder does.
      const y = new Int32Array(n + 3).fill(-1);
      const padded = new Float32Array((n + 3) * dim);
      padded.set(x, 3 * dim);
      labeler.label(w, b, padded, 3, n, y);
      assert.deepEqual(y.subarray(3), expected, `simd ${simd}`);
      assert.deepEqual(Array.from(y.subarray(0, 3)), [-1, -1, -1]);
    }
  } finally {
    setSimdKernels(true);
  }
});

test('generated labels are identical with the SIMD screen on and off', () => {
  const opts = { ...base, examplesPerClient: 600, dim: 13, numClasses: 7 };
  try {
    setSimdKernels(true);
    const screened = [3, 4].map((k) => new SyntheticGenerator(opts).client(k));
    setSimdKernels(false);
    const exact = [3, 4].map((k) => new SyntheticGenerator(opts).client(k));
    assert.deepEqual(screened, exact);
  } finally {
    setSimdKernels(true);
  }
});
