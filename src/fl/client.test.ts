import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { BagExamples, DenseExamples, Examples } from '../data/types.ts';
import type { Model } from '../nn/model.ts';
import { embeddingBag, softmaxRegression } from '../nn/models.ts';
import { TrainScratch, trainLocal } from './client.ts';
import { arenaOf, UpdateArena } from './wasm.ts';

/** Test-only linear regression on the label value: loss = mean ½(w·x + b − y)². */
function linearModel(dim: number): Model {
  return {
    name: 'test-linear',
    numParams: dim + 1,
    numOutputs: 1,
    inputKind: 'dense',
    inputDim: dim,
    init: (rng) => Float32Array.from({ length: dim + 1 }, () => rng.normal() * 0.1),
    lossAndGrad(params, batch, grad) {
      const b = batch as DenseExamples;
      let loss = 0;
      for (let i = 0; i < b.n; i++) {
        let pred = params[dim] as number;
        for (let j = 0; j < dim; j++) pred += (params[j] as number) * (b.x[i * dim + j] as number);
        const r = pred - (b.y[i] as number);
        loss += 0.5 * r * r;
        for (let j = 0; j < dim; j++)
          grad[j] = (grad[j] as number) + (r * (b.x[i * dim + j] as number)) / b.n;
        grad[dim] = (grad[dim] as number) + r / b.n;
      }
      return loss / b.n;
    },
    forward: () => new Float32Array(0),
  };
}

function makeData(n: number, dim: number, seed: number): DenseExamples {
  const rng = new Rng(seed);
  const x = Float32Array.from({ length: n * dim }, () => rng.normal());
  const y = Int32Array.from({ length: n }, () => rng.int(5));
  return { kind: 'dense', n, dim, x, y };
}

/** Independent reference: rebuilds every minibatch with fresh arrays, using Rng.permutation. */
function referenceSgd(
  model: Model,
  start: Float32Array,
  data: DenseExamples,
  epochs: number,
  batchSize: number,
  lr: number,
  seed: number,
  maxSteps = Number.POSITIVE_INFINITY,
): { params: Float64Array; steps: number } {
  const rng = new Rng(seed);
  const p = new Float32Array(start);
  let steps = 0;
  for (let e = 0; e < epochs; e++) {
    const perm = rng.permutation(data.n);
    for (let s = 0; s < data.n && steps < maxSteps; s += batchSize) {
      const idx = Array.from(perm.subarray(s, Math.min(data.n, s + batchSize)));
      const x = new Float32Array(idx.length * data.dim);
      idx.forEach((i, r) => {
        x.set(data.x.subarray(i * data.dim, (i + 1) * data.dim), r * data.dim);
      });
      const batch: Examples = {
        kind: 'dense',
        n: idx.length,
        dim: data.dim,
        x,
        y: Int32Array.from(idx, (i) => data.y[i] as number),
      };
      const g = new Float32Array(p.length);
      model.lossAndGrad(p, batch, g);
      for (let k = 0; k < p.length; k++) p[k] = (p[k] as number) - lr * (g[k] as number);
      steps++;
    }
  }
  return { params: Float64Array.from(p), steps };
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `index ${i}: ${a[i]} vs ${b[i]}`);
}

test('one full-batch step: delta = lr · gradient at start', () => {
  const model = linearModel(4);
  const data = makeData(7, 4, 1);
  const start = model.init(new Rng(2));
  const startCopy = new Float32Array(start);
  const r = trainLocal(model, start, data, { epochs: 1, batchSize: 100, lr: 0.1 }, new Rng(3));
  const g = new Float32Array(model.numParams);
  const loss = model.lossAndGrad(start, data, g);
  assertClose(
    r.delta,
    Array.from(g, (v) => 0.1 * v),
    1e-6,
  );
  assert.equal(r.steps, 1);
  assert.equal(r.numExamples, 7);
  assert.ok(Math.abs(r.loss - loss) < 1e-6);
  assert.deepEqual(start, startCopy, 'start params must not change');
});

test('minibatch epochs match an independently coded SGD loop', () => {
  const model = linearModel(3);
  const data = makeData(23, 3, 5);
  const start = model.init(new Rng(6));
  const r = trainLocal(model, start, data, { epochs: 3, batchSize: 5, lr: 0.05 }, new Rng(9));
  const ref = referenceSgd(model, start, data, 3, 5, 0.05, 9);
  assert.equal(r.steps, ref.steps);
  assert.equal(r.steps, 15); // 5 batches (4 full + 1 of 3) per epoch
  const trained = Array.from(start, (s, i) => s - (r.delta[i] as number));
  assertClose(trained, ref.params, 1e-5);
});

test('maxSteps stops early, mid-epoch', () => {
  const model = linearModel(3);
  const data = makeData(20, 3, 7);
  const start = model.init(new Rng(1));
  const r = trainLocal(model, start, data, { epochs: 5, batchSize: 4, lr: 0.05, maxSteps: 7 }, new Rng(4));
  const ref = referenceSgd(model, start, data, 5, 4, 0.05, 4, 7);
  assert.equal(r.steps, 7);
  assertClose(
    Array.from(start, (s, i) => s - (r.delta[i] as number)),
    ref.params,
    1e-5,
  );
});

test('a reused scratch gives the same result as a fresh one', () => {
  const model = linearModel(3);
  const scratch = new TrainScratch();
  const big = makeData(31, 3, 1);
  const small = makeData(6, 3, 2);
  const start = model.init(new Rng(1));
  const spec = { epochs: 2, batchSize: 4, lr: 0.05 };
  trainLocal(model, start, big, { ...spec, batchSize: 8 }, new Rng(1), scratch);
  const reused = trainLocal(model, start, small, spec, new Rng(2), scratch);
  const fresh = trainLocal(model, start, small, spec, new Rng(2));
  assert.deepEqual(reused.delta, fresh.delta);
  assert.notStrictEqual(reused.delta, fresh.delta);
});

test('empty client data gives a zero delta and no steps', () => {
  const model = linearModel(2);
  const data: DenseExamples = { kind: 'dense', n: 0, dim: 2, x: new Float32Array(0), y: new Int32Array(0) };
  const r = trainLocal(
    model,
    new Float32Array(3).fill(1),
    data,
    { epochs: 2, batchSize: 4, lr: 0.1 },
    new Rng(1),
  );
  assert.deepEqual(r.delta, new Float32Array(3));
  assert.equal(r.steps, 0);
  assert.equal(r.loss, 0);
});

test('mismatched shapes and bad specs are typed errors', () => {
  const model = linearModel(3);
  const data = makeData(4, 3, 1);
  const spec = { epochs: 1, batchSize: 2, lr: 0.1 };
  const isShape = (e: unknown) => e instanceof OrchardError && e.code === 'SHAPE_MISMATCH';
  assert.throws(() => trainLocal(model, new Float32Array(3), data, spec, new Rng(1)), isShape);
  assert.throws(() => trainLocal(model, new Float32Array(4), makeData(4, 2, 1), spec, new Rng(1)), isShape);
  assert.throws(
    () => trainLocal(model, new Float32Array(4), data, { ...spec, batchSize: 0 }, new Rng(1)),
    OrchardError,
  );
  assert.throws(
    () => trainLocal(model, new Float32Array(4), data, { ...spec, lr: Number.NaN }, new Rng(1)),
    OrchardError,
  );
});

test('with a delta arena, deltas are allocated there and equal the ordinary ones', () => {
  const model = linearModel(3);
  const data = makeData(9, 3, 4);
  const start = model.init(new Rng(3));
  const spec = { epochs: 1, batchSize: 4, lr: 0.1 };
  const arena = new UpdateArena();
  const scratch = new TrainScratch();
  scratch.deltaArena = arena;
  const inArena = trainLocal(model, start, data, spec, new Rng(8), scratch);
  const plain = trainLocal(model, start, data, spec, new Rng(8));
  assert.equal(arenaOf(inArena.delta), arena);
  assert.equal(arenaOf(plain.delta), undefined);
  assert.deepEqual(Array.from(inArena.delta), Array.from(plain.delta));
  arena.free(inArena.delta);
});

test('bag data: one full-batch step equals lr · gradient of an embedding-bag model', () => {
  const model = embeddingBag({ vocab: 12, embeddingDim: 4, numClasses: 3 });
  const data: BagExamples = {
    kind: 'bags',
    n: 3,
    vocab: 12,
    offsets: Int32Array.from([0, 2, 3, 6]),
    ids: Int32Array.from([1, 5, 11, 0, 5, 7]),
    y: Int32Array.from([2, 0, 1]),
  };
  const start = model.init(new Rng(4));
  const r = trainLocal(model, start, data, { epochs: 1, batchSize: 8, lr: 0.3 }, new Rng(1));
  const g = new Float32Array(model.numParams);
  model.lossAndGrad(start, data, g);
  assert.ok(g.some((v) => v !== 0));
  assertClose(
    r.delta,
    Array.from(g, (v) => 0.3 * v),
    1e-6,
  );
});

test('softmax regression (fused SGD path) matches the independently coded SGD loop', () => {
  const model = softmaxRegression(6, 4);
  const rng = new Rng(12);
  const x = Float32Array.from({ length: 17 * 6 }, () => rng.normal());
  const y = Int32Array.from({ length: 17 }, () => rng.int(4));
  const data: DenseExamples = { kind: 'dense', n: 17, dim: 6, x, y };
  const start = Float32Array.from({ length: model.numParams }, () => rng.normal() * 0.2);
  assert.ok(model.softmaxSgd() !== null, 'softmax regression should take the fused path');
  for (const maxSteps of [undefined, 6]) {
    const spec = { epochs: 3, batchSize: 4, lr: 0.1, ...(maxSteps === undefined ? {} : { maxSteps }) };
    const r = trainLocal(model, start, data, spec, new Rng(21));
    const ref = referenceSgd(model, start, data, 3, 4, 0.1, 21, maxSteps);
    assert.equal(r.steps, ref.steps);
    assertClose(
      Array.from(start, (s, i) => s - (r.delta[i] as number)),
      ref.params,
      1e-5,
    );
  }
});
