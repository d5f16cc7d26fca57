import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { BagExamples } from '../data/types.ts';
import { finiteDifferenceMismatches, sampleIndices } from './gradcheck.ts';
import {
  Conv2d,
  Dense,
  EmbeddingBag,
  Flatten,
  type Layer,
  MaxPool2,
  Relu,
  setSimdKernels,
  simdKernelsActive,
  Tanh,
} from './layers.ts';

/** Parameters start at this offset inside a larger vector, to catch offset bugs. */
const OFF = 3;

/**
 * Checks a layer's backward pass on the scalar L = Σ r ⊙ y (r fixed random weights, so ∂L/∂y = r)
 * against central finite differences w.r.t. both its parameters and its inputs.
 */
function checkLayer(layer: Layer, n: number, x: Float32Array, seed: number, maxChecks = 80): void {
  const rng = new Rng(seed);
  const params = new Float32Array(OFF + layer.numParams + 2);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.5;
  const r = new Float32Array(n * layer.outSize);
  for (let i = 0; i < r.length; i++) r[i] = rng.normal();
  layer.reserve(n);
  const y = new Float32Array(n * layer.outSize);
  const loss = () => {
    layer.forward(params, OFF, x, n, y);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += (r[i] as number) * (y[i] as number);
    return s;
  };
  loss();
  const grad = new Float32Array(params.length);
  const dx = new Float32Array(x.length).fill(Number.NaN); // backward must overwrite every entry
  layer.backward(params, OFF, x, y, r.slice(), n, grad, dx);
  for (const i of [0, 1, 2, params.length - 2, params.length - 1])
    assert.equal(grad[i], 0, `gradient written outside the layer's parameters at ${i}`);
  const next = () => rng.next();
  const paramIdx = sampleIndices(layer.numParams, maxChecks, next).map((i) => i + OFF);
  const badP = finiteDifferenceMismatches(loss, params, grad, paramIdx);
  assert.deepEqual(badP, [], `${layer.name}: parameter gradient mismatches`);
  const badX = finiteDifferenceMismatches(loss, x, dx, sampleIndices(x.length, maxChecks, next));
  assert.deepEqual(badX, [], `${layer.name}: input gradient mismatches`);
}

/** Inputs whose values are pairwise ≥ 0.01 apart and ≥ 0.05 from 0, so h = 1e-3 never crosses a kink. */
function kinkFreeInput(rng: Rng, len: number): Float32Array {
  const perm = rng.permutation(len);
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    const v = (perm[i] as number) - len / 2;
    x[i] = (v >= 0 ? v + 5 : v - 5) * 0.01;
  }
  return x;
}

function normalInput(rng: Rng, len: number, zeroFrac = 0): Float32Array {
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) x[i] = rng.next() < zeroFrac ? 0 : rng.normal();
  return x;
}

test('dense: gradients w.r.t. weights, bias and inputs (dense and sparse-input kernels)', () => {
  const rng = new Rng(10);
  checkLayer(new Dense(7, 5), 6, normalInput(rng, 6 * 7), 11);
  checkLayer(new Dense(40, 3), 5, normalInput(rng, 5 * 40, 0.8), 12); // ≥ 50% zeros: sparse path
  checkLayer(new Dense(1, 1), 1, normalInput(rng, 1), 13);
});

test('dense: sparse and dense kernels agree on the same input', () => {
  const rng = new Rng(14);
  const layer = new Dense(64, 9, 'glorot');
  const params = new Float32Array(layer.numParams);
  layer.init(params, 0, rng);
  for (let i = 64 * 9; i < params.length; i++) params[i] = rng.normal();
  layer.reserve(3);
  const sparseX = normalInput(rng, 3 * 64, 0.9);
  const yS = new Float32Array(27);
  layer.forward(params, 0, sparseX, 3, yS);
  // Same values with the zeros replaced by a tiny nonzero: takes the dense kernel, same result ± tiny.
  const denseX = sparseX.map((v) => (v === 0 ? 1e-30 : v));
  const yD = new Float32Array(27);
  layer.forward(params, 0, denseX, 3, yD);
  for (let i = 0; i < 27; i++) assert.ok(Math.abs((yS[i] as number) - (yD[i] as number)) < 1e-5);
});

test('relu and tanh: input gradients', () => {
  const rng = new Rng(20);
  checkLayer(new Relu(12), 3, kinkFreeInput(rng, 36), 21);
  checkLayer(new Tanh(12), 3, normalInput(rng, 36), 22);
});

test('flatten is the identity and passes gradients through', () => {
  const rng = new Rng(23);
  checkLayer(new Flatten(10), 2, normalInput(rng, 20), 24);
});

test('conv2d: gradients for valid and same padding, several channels, odd and even kernels', () => {
  const rng = new Rng(30);
  checkLayer(new Conv2d(2, 6, 3, 3, 'valid'), 2, normalInput(rng, 2 * 2 * 36), 31);
  checkLayer(new Conv2d(2, 5, 2, 3, 'same'), 2, normalInput(rng, 2 * 2 * 25), 32);
  checkLayer(new Conv2d(1, 6, 2, 4, 'same'), 1, normalInput(rng, 36), 33);
});

test('conv2d: a 3×3 kernel on a known image gives the hand-computed output', () => {
  // Input 3×3 = 1..9, one all-ones 3×3 kernel, bias 0.5. Valid: one output = 45.5.
  // Same: centre 45.5, corner (0,0) = 1+2+4+5 + 0.5 = 12.5.
  const x = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const p = new Float32Array(10).fill(1);
  p[9] = 0.5;
  const valid = new Conv2d(1, 3, 1, 3, 'valid');
  const yv = new Float32Array(1);
  valid.forward(p, 0, x, 1, yv);
  assert.equal(yv[0], 45.5);
  const same = new Conv2d(1, 3, 1, 3, 'same');
  const ys = new Float32Array(9);
  same.forward(p, 0, x, 1, ys);
  assert.equal(ys[4], 45.5);
  assert.equal(ys[0], 12.5);
  assert.equal(ys[8], 5 + 6 + 8 + 9 + 0.5);
});

test('maxpool 2×2: picks window maxima and routes gradients to them', () => {
  const pool = new MaxPool2(1, 4);
  const x = Float32Array.from([1, 5, 2, 0, 3, 4, 8, 1, 0, 0, 0, 0, 9, 0, 0, 7]);
  pool.reserve(1);
  const y = new Float32Array(4);
  pool.forward(new Float32Array(0), 0, x, 1, y);
  assert.deepEqual([...y], [5, 8, 9, 7]);
  const rng = new Rng(40);
  checkLayer(new MaxPool2(2, 5), 2, kinkFreeInput(rng, 2 * 2 * 25), 41);
});

test('embedding bag: weighted mean forward and parameter gradient', () => {
  const rng = new Rng(50);
  const bag = new EmbeddingBag(6, 3);
  const params = new Float32Array(OFF + bag.numParams);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal();
  const bags: BagExamples = {
    kind: 'bags',
    n: 3,
    vocab: 6,
    offsets: Int32Array.from([0, 3, 3, 5]),
    ids: Int32Array.from([1, 4, 1, 0, 5]),
    weights: Float32Array.from([1, 2, 0.5, 1, 3]),
    y: Int32Array.from([0, 0, 0]),
  };
  const y = new Float32Array(9);
  bag.forward(params, OFF, bags, 3, y);
  // Example 0: (1·E1 + 2·E4 + 0.5·E1) / 3.5; example 1 is empty → zeros.
  for (let c = 0; c < 3; c++) {
    const e1 = params[OFF + 3 + c] as number;
    const e4 = params[OFF + 12 + c] as number;
    assert.ok(Math.abs((y[c] as number) - (1.5 * e1 + 2 * e4) / 3.5) < 1e-6);
    assert.equal(y[3 + c], 0);
  }
  const r = new Float32Array(9);
  for (let i = 0; i < 9; i++) r[i] = rng.normal();
  const grad = new Float32Array(params.length);
  bag.backward(OFF, bags, 3, r, grad);
  const loss = () => {
    bag.forward(params, OFF, bags, 3, y);
    let s = 0;
    for (let i = 0; i < 9; i++) s += (r[i] as number) * (y[i] as number);
    return s;
  };
  const all = Array.from({ length: bag.numParams }, (_, i) => i + OFF);
  assert.deepEqual(finiteDifferenceMismatches(loss, params, grad, all), []);
  const unweighted: BagExamples = { ...bags, weights: undefined as never };
  delete (unweighted as { weights?: Float32Array }).weights;
  bag.forward(params, OFF, unweighted, 1, y);
  for (let c = 0; c < 3; c++) {
    const mean = (2 * (params[OFF + 3 + c] as number) + (params[OFF + 12 + c] as number)) / 3;
    assert.ok(Math.abs((y[c] as number) - mean) < 1e-6);
  }
});

test('embedding bag: out-of-range ids are DATA_INVALID', () => {
  const bag = new EmbeddingBag(4, 2);
  const bags: BagExamples = {
    kind: 'bags',
    n: 1,
    vocab: 4,
    offsets: Int32Array.from([0, 2]),
    ids: Int32Array.from([1, 4]),
    y: Int32Array.from([0]),
  };
  assert.throws(
    () => bag.check(bags, 1),
    (e: unknown) => e instanceof OrchardError && e.code === 'DATA_INVALID',
  );
});

test('dense: large odd-sized layers (Wasm SIMD path with padding) pass the same gradient checks', () => {
  const rng = new Rng(15);
  assert.ok(simdKernelsActive(), 'SIMD kernels should be active on Node 20');
  checkLayer(new Dense(37, 23), 13, normalInput(rng, 13 * 37), 16);
  checkLayer(new Dense(64, 40), 8, normalInput(rng, 8 * 64, 0.7), 17);
});

test('dense: SIMD and scalar kernels give the same outputs and gradients', () => {
  const rng = new Rng(18);
  const layer = new Dense(101, 33, 'glorot');
  const params = new Float32Array(layer.numParams);
  layer.init(params, 0, rng);
  const n = 11;
  const x = normalInput(rng, n * 101);
  const dy = normalInput(rng, n * 33);
  layer.reserve(n);
  const run = () => {
    const y = new Float32Array(n * 33);
    const grad = new Float32Array(layer.numParams);
    layer.forward(params, 0, x, n, y);
    layer.backward(params, 0, x, y, dy, n, grad, null);
    return [y, grad] as const;
  };
  const [ySimd, gSimd] = run();
  setSimdKernels(false);
  try {
    const [yScalar, gScalar] = run();
    for (let i = 0; i < ySimd.length; i++)
      assert.ok(Math.abs((ySimd[i] as number) - (yScalar[i] as number)) < 1e-4);
    for (let i = 0; i < gSimd.length; i++)
      assert.ok(Math.abs((gSimd[i] as number) - (gScalar[i] as number)) < 1e-4);
  } finally {
    setSimdKernels(true);
  }
});

test('conv2d: SIMD (im2col) path passes gradient checks and agrees with the scalar path', () => {
  const rng = new Rng(34);
  // kk·outC·pixels ≥ 2048, odd channel counts and pixel counts not divisible by 4.
  const same = new Conv2d(3, 7, 5, 3, 'same');
  const valid = new Conv2d(2, 9, 6, 4, 'valid');
  checkLayer(same, 2, normalInput(rng, 2 * same.inSize), 35);
  checkLayer(valid, 2, normalInput(rng, 2 * valid.inSize), 36);
  for (const layer of [same, valid]) {
    const params = Float32Array.from({ length: layer.numParams }, () => rng.normal());
    const n = 3;
    const x = normalInput(rng, n * layer.inSize);
    const dy = normalInput(rng, n * layer.outSize);
    const run = () => {
      const y = new Float32Array(n * layer.outSize);
      const grad = new Float32Array(layer.numParams);
      const dx = new Float32Array(n * layer.inSize);
      layer.forward(params, 0, x, n, y);
      layer.backward(params, 0, x, y, dy, n, grad, dx);
      return [y, grad, dx] as const;
    };
    const fast = run();
    setSimdKernels(false);
    try {
      const slow = run();
      for (let a = 0; a < 3; a++) {
        const u = fast[a] as Float32Array;
        const v = slow[a] as Float32Array;
        for (let i = 0; i < u.length; i++)
          assert.ok(Math.abs((u[i] as number) - (v[i] as number)) <= 1e-4 * (1 + Math.abs(v[i] as number)));
      }
    } finally {
      setSimdKernels(true);
    }
  }
});
