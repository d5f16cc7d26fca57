import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { DenseExamples } from '../../data/types.ts';
import { finiteDifferenceMismatches } from '../../nn/gradcheck.ts';
import { embeddingBag, mlp } from '../../nn/models.ts';
import { createOptimizer } from '../../nn/optim.ts';
import { Mask, maskedModel, paramSegments } from './mask.ts';
import { trainSteps } from './train.ts';

function toyData(n: number, dim: number, classes: number, seed: number): DenseExamples {
  const rng = new Rng(seed);
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(classes);
    for (let j = 0; j < dim; j++) x[i * dim + j] = rng.normal() + (j % classes === y[i] ? 1.5 : 0);
  }
  return { kind: 'dense', n, dim, x, y };
}

function randomMask(model: { numParams: number }, keep: number, seed: number, like: Mask): Mask {
  const rng = new Rng(seed);
  return Mask.fromBits(
    Array.from({ length: model.numParams }, () => (rng.next() < keep ? 1 : 0)),
    like.segments,
  );
}

test('segments follow the dense layout: weights (in·out) then bias (out) per layer', () => {
  const model = mlp(6, [4], 3);
  const segs = paramSegments(model);
  assert.deepEqual(
    segs.map((s) => [s.role, s.offset, s.length, s.layer]),
    [
      ['weight', 0, 24, 0],
      ['bias', 24, 4, 0],
      ['weight', 28, 12, 1],
      ['bias', 40, 3, 1],
    ],
  );
  // Dense biases start at zero and weights do not: an independent check that the bias segments are biases.
  const p = model.init(new Rng(3));
  for (const s of segs) {
    const v = p.subarray(s.offset, s.offset + s.length);
    if (s.role === 'bias') assert.ok(v.every((b) => b === 0));
    else assert.ok(v.some((w) => w !== 0));
  }
  const bag = embeddingBag({ vocab: 10, embeddingDim: 4, numClasses: 2 });
  assert.deepEqual(
    paramSegments(bag).map((s) => [s.role, s.length]),
    [
      ['embedding', 40],
      ['weight', 8],
      ['bias', 2],
    ],
  );
});

test('JSON round trip keeps bits and segments (length not a multiple of 8)', () => {
  const model = mlp(5, [3], 3); // 15 + 3 + 9 + 3 = 30 parameters
  const mask = randomMask(model, 0.5, 7, Mask.dense(model));
  const back = Mask.fromJSON(JSON.parse(JSON.stringify(mask.toJSON())));
  assert.ok(back.equals(mask));
  assert.deepEqual(back.segments, mask.segments);
  assert.equal(back.kept(), mask.kept());
});

test('sparsity counts only prunable roles by default; per-segment counts add up', () => {
  const model = mlp(4, [3], 2); // weights 12 + 6, biases 3 + 2
  const bits = new Uint8Array(model.numParams).fill(1);
  bits.fill(0, 0, 6); // half of the first weight matrix
  const mask = Mask.fromBits(bits, Mask.dense(model).segments);
  assert.equal(mask.sparsity(), 6 / 18);
  assert.equal(mask.sparsity(['weight', 'bias', 'embedding']), 6 / 23);
  const per = mask.segmentSparsity();
  assert.equal(per[0]?.kept, 6);
  assert.equal(
    per.reduce((s, x) => s + x.kept, 0),
    mask.kept(),
  );
});

test('bad masks are rejected with typed errors', () => {
  const model = mlp(4, [3], 2);
  const segs = Mask.dense(model).segments;
  assert.throws(() => Mask.fromBits(new Uint8Array(model.numParams - 1), segs), ShapeError);
  const two = new Uint8Array(model.numParams);
  two[3] = 2;
  assert.throws(
    () => Mask.fromBits(two, segs),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
  const other = mlp(5, [3], 2);
  assert.throws(() => maskedModel(other, Mask.dense(model)), ShapeError);
  const p = new Float32Array(model.numParams + 2).fill(1);
  assert.throws(() => Mask.dense(model).apply(p), ShapeError);
  assert.ok(
    p.every((v) => v === 1),
    'a failed apply changes nothing',
  );
  assert.throws(
    () => Mask.fromJSON({ numParams: 30, segments: segs, bits: 'AA==' }),
    (e: unknown) => e instanceof OrchardError,
  );
});

test('masked gradient matches finite differences, and is exactly zero at masked entries', () => {
  const model = mlp(5, [4], 3, 'tanh');
  const mask = randomMask(model, 0.6, 11, Mask.dense(model));
  const masked = maskedModel(model, mask);
  const params = model.init(new Rng(5)); // deliberately NOT masked: the wrapper must ignore masked values
  const data = toyData(6, 5, 3, 2);
  const grad = new Float32Array(model.numParams);
  masked.lossAndGrad(params, data, grad);
  for (let i = 0; i < grad.length; i++) if (mask.bits[i] === 0) assert.equal(grad[i], 0);
  const scratch = new Float32Array(model.numParams);
  const f = () => masked.lossAndGrad(params, data, scratch.fill(0));
  const all = Array.from({ length: model.numParams }, (_, i) => i);
  assert.deepEqual(finiteDifferenceMismatches(f, params, grad, all, { h: 1e-2, atol: 2e-3, rtol: 2e-2 }), []);
  // The masked model is the inner model at params ⊙ mask.
  const direct = model.forward(mask.applied(params), data);
  assert.deepEqual(masked.forward(params, data), direct);
});

test('lossAndGrad adds into grad (masked entries receive nothing)', () => {
  const model = mlp(5, [4], 3);
  const mask = randomMask(model, 0.5, 3, Mask.dense(model));
  const masked = maskedModel(model, mask);
  const params = masked.init(new Rng(1));
  const data = toyData(8, 5, 3, 4);
  const fresh = new Float32Array(model.numParams);
  masked.lossAndGrad(params, data, fresh);
  const pre = new Float32Array(model.numParams).fill(1);
  masked.lossAndGrad(params, data, pre);
  for (let i = 0; i < pre.length; i++) assert.equal(pre[i], Math.fround(1 + (fresh[i] as number)));
});

test('masked weights stay exactly zero through momentum and Adam training', () => {
  const model = mlp(6, [8], 3);
  const mask = randomMask(model, 0.3, 9, Mask.dense(model));
  const masked = maskedModel(model, mask);
  const start = masked.init(new Rng(2));
  assert.ok(mask.zeroOutside(start));
  const data = toyData(64, 6, 3, 8);
  const run = trainSteps(masked, start, data, { steps: 40, batchSize: 16, lr: 0.1, momentum: 0.9, seed: 1 });
  assert.ok(mask.zeroOutside(run.params));
  let moved = 0;
  for (let i = 0; i < start.length; i++) if (mask.bits[i] === 1 && run.params[i] !== start[i]) moved++;
  assert.ok(moved > mask.kept() / 2, 'kept weights train');
  const adam = createOptimizer(
    { kind: 'adam', lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-3 },
    model.numParams,
  );
  const p = Float32Array.from(start);
  const g = new Float32Array(model.numParams);
  for (let s = 0; s < 10; s++) {
    g.fill(0);
    masked.lossAndGrad(p, data, g);
    adam.step(p, g);
  }
  assert.ok(mask.zeroOutside(p));
});
