import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { DenseExamples } from '../data/types.ts';
import { SoftmaxSgd } from './fused.ts';
import { finiteDifferenceMismatches } from './gradcheck.ts';
import { setSimdKernels, simdKernelsActive } from './layers.ts';
import { logisticRegression, mlp, softmaxRegression } from './models.ts';

function denseData(rng: Rng, n: number, dim: number, classes: number): DenseExamples {
  const x = Float32Array.from({ length: n * dim }, () => rng.normal());
  const y = Int32Array.from({ length: n }, () => rng.int(classes));
  return { kind: 'dense', n, dim, x, y };
}

function randomParams(rng: Rng, count: number): Float32Array {
  return Float32Array.from({ length: count }, () => rng.normal() * 0.3);
}

/** Runs fn with the Wasm SIMD kernels on (when the runtime has them) and off. */
function bothKernelPaths(fn: (label: string) => void): void {
  const modes = simdKernelsActive() ? [true, false] : [false];
  try {
    for (const on of modes) {
      setSimdKernels(on);
      fn(on ? 'simd' : 'scalar');
    }
  } finally {
    setSimdKernels(true);
  }
}

/** Mean softmax cross-entropy of rows `rows` in float64, coded from the definition. */
function naiveLoss(params: Float32Array, data: DenseExamples, rows: readonly number[], c: number): number {
  const k = data.dim;
  let total = 0;
  for (const i of rows) {
    const z: number[] = [];
    for (let j = 0; j < c; j++) {
      let s = params[c * k + j] as number;
      for (let t = 0; t < k; t++) s += (params[j * k + t] as number) * (data.x[i * k + t] as number);
      z.push(s);
    }
    const max = Math.max(...z);
    const lse = max + Math.log(z.reduce((acc, v) => acc + Math.exp(v - max), 0));
    total += lse - (z[data.y[i] as number] as number);
  }
  return total / rows.length;
}

for (const shape of [
  { k: 60, c: 10, n: 20, batch: 10 },
  // Odd class count, inputDim not a multiple of 4 and a short last batch exercise every padding path.
  { k: 7, c: 3, n: 23, batch: 5 },
]) {
  test(`fused SGD equals generic lossAndGrad + SGD (k=${shape.k}, c=${shape.c}, n=${shape.n}, batch=${shape.batch})`, () => {
    bothKernelPaths((label) => {
      const { k, c, n, batch } = shape;
      const rng = new Rng(k * 100 + c);
      const model = softmaxRegression(k, c);
      const data = denseData(rng, n, k, c);
      const start = randomParams(rng, model.numParams);
      const lr = 0.2;
      const sgd = new SoftmaxSgd(k, c);
      sgd.begin(start, data, batch);
      // Generic reference: fresh gathered batches through the layer-by-layer lossAndGrad, then p −= lr·g.
      const ref = new Float32Array(start);
      for (let epoch = 0; epoch < 2; epoch++) {
        const order = rng.permutation(n);
        sgd.arrange(order);
        for (let b = 0; b < n; b += batch) {
          const end = Math.min(n, b + batch);
          const rows = Array.from(order.subarray(b, end));
          const x = new Float32Array(rows.length * k);
          rows.forEach((i, r) => {
            x.set(data.x.subarray(i * k, (i + 1) * k), r * k);
          });
          const y = Int32Array.from(rows, (i) => data.y[i] as number);
          const g = new Float32Array(model.numParams);
          const refLoss = model.lossAndGrad(ref, { kind: 'dense', n: rows.length, dim: k, x, y }, g);
          const loss = sgd.step(b, end, lr);
          assert.ok(Math.abs(loss - refLoss) < 1e-5, `${label}: batch loss ${loss} vs ${refLoss}`);
          for (let p = 0; p < ref.length; p++) ref[p] = (ref[p] as number) - lr * (g[p] as number);
        }
      }
      const delta = new Float32Array(model.numParams);
      sgd.finishDelta(start, delta);
      for (let p = 0; p < ref.length; p++) {
        const trained = (start[p] as number) - (delta[p] as number);
        assert.ok(
          Math.abs(trained - (ref[p] as number)) < 2e-5,
          `${label}: param ${p}: ${trained} vs ${ref[p]}`,
        );
      }
    });
  });
}

test('one fused step moves the parameters by −lr × the finite-difference gradient', () => {
  bothKernelPaths((label) => {
    const k = 9;
    const c = 4;
    const rng = new Rng(7);
    const data = denseData(rng, 6, k, c);
    const params = randomParams(rng, k * c + c);
    const rows = [4, 1, 5, 0];
    const sgd = new SoftmaxSgd(k, c);
    sgd.begin(params, data, rows.length);
    // Rows 4, 1, 5, 0 first (the batch), then the rest.
    sgd.arrange(Int32Array.from([4, 1, 5, 0, 2, 3]));
    const lr = 1;
    const loss = sgd.step(0, rows.length, lr);
    assert.ok(Math.abs(loss - naiveLoss(params, data, rows, c)) < 1e-5, `${label}: loss`);
    const delta = new Float32Array(params.length);
    sgd.finishDelta(params, delta);
    // delta = lr · gradient of the batch's mean loss at the starting parameters.
    const grad = Array.from(delta, (d) => d / lr);
    assert.ok(grad.some((g) => Math.abs(g) > 1e-3));
    const all = Array.from({ length: params.length }, (_, i) => i);
    assert.deepEqual(
      finiteDifferenceMismatches(() => naiveLoss(params, data, rows, c), params, grad, all),
      [],
      `${label}: gradient`,
    );
  });
});

test('softmaxSgd() exists exactly for softmax regression', () => {
  assert.ok(softmaxRegression(5, 3).softmaxSgd() instanceof SoftmaxSgd);
  assert.equal(logisticRegression(5).softmaxSgd(), null);
  assert.equal(mlp(5, [4], 3).softmaxSgd(), null);
  assert.equal(mlp(5, [], 3, 'relu', 'mse').softmaxSgd(), null);
});

test('bad labels, rows and shapes are typed errors', () => {
  const rng = new Rng(3);
  const data = denseData(rng, 5, 4, 3);
  const params = randomParams(rng, 15);
  const sgd = new SoftmaxSgd(4, 3);
  const code = (c: string) => (e: unknown) => e instanceof OrchardError && e.code === c;
  assert.throws(() => sgd.begin(new Float32Array(14), data, 2), code('SHAPE_MISMATCH'));
  assert.throws(() => sgd.begin(params, { ...data, dim: 5 }, 2), code('SHAPE_MISMATCH'));
  assert.throws(() => sgd.arrange(Int32Array.from([0, 1, 2, 3, 4])), code('INVALID_STATE'));
  sgd.begin(params, { ...data, y: Int32Array.from([0, 1, 3, 0, 1]) }, 2);
  assert.throws(() => sgd.arrange(Int32Array.from([0, 1, 2, 3, 4])), code('DATA_INVALID'));
  sgd.begin(params, data, 2);
  assert.throws(() => sgd.arrange(Int32Array.from([0, 1, 2, 3, 5])), code('INVALID_ARGUMENT'));
  sgd.arrange(Int32Array.from([4, 3, 2, 1, 0]));
  assert.throws(() => sgd.step(0, 3, 0.1), code('INVALID_ARGUMENT'));
  assert.throws(() => sgd.step(4, 6, 0.1), code('INVALID_ARGUMENT'));
  assert.throws(() => sgd.step(2, 2, 0.1), code('INVALID_ARGUMENT'));
});
