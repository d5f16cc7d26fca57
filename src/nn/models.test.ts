import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { BagExamples, DenseExamples, Examples } from '../data/types.ts';
import { finiteDifferenceMismatches, sampleIndices } from './gradcheck.ts';
import type { Model } from './model.ts';
import { cnn, embeddingBag, logisticRegression, mlp, softmaxRegression } from './models.ts';

function denseData(rng: Rng, n: number, dim: number, classes: number, zeroFrac = 0): DenseExamples {
  const x = new Float32Array(n * dim);
  for (let i = 0; i < x.length; i++) x[i] = rng.next() < zeroFrac ? 0 : rng.normal();
  const y = Int32Array.from({ length: n }, () => rng.int(classes));
  return { kind: 'dense', n, dim, x, y };
}

/** Mean-loss gradient w.r.t. params (and dense inputs) against central finite differences. */
function checkModel(
  model: Model,
  data: Examples,
  seed: number,
  opts: { checkInputs?: boolean; maxChecks?: number } = {},
) {
  const rng = new Rng(seed);
  const params = model.init(rng);
  // Random nonzero parameters everywhere (init zeros some, e.g. biases), so every path is exercised.
  for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) + rng.normal() * 0.1;
  const grad = new Float32Array(model.numParams);
  const inputGrad =
    data.kind === 'dense' && opts.checkInputs !== false ? new Float32Array(data.n * data.dim) : undefined;
  const loss0 = model.lossAndGrad(params, data, grad, inputGrad);
  assert.ok(Number.isFinite(loss0));
  const scratch = new Float32Array(model.numParams);
  const f = () => model.lossAndGrad(params, data, scratch.fill(0));
  const next = () => rng.next();
  const max = opts.maxChecks ?? 60;
  assert.deepEqual(
    finiteDifferenceMismatches(f, params, grad, sampleIndices(model.numParams, max, next)),
    [],
    `${model.name}: parameter gradient`,
  );
  if (inputGrad !== undefined && data.kind === 'dense')
    assert.deepEqual(
      finiteDifferenceMismatches(
        f,
        data.x as Float32Array,
        inputGrad,
        sampleIndices(data.x.length, max, next),
      ),
      [],
      `${model.name}: input gradient`,
    );
  // lossAndGrad ADDS into grad: a second call on the same batch doubles it.
  const twice = grad.slice();
  model.lossAndGrad(params, data, twice);
  for (let i = 0; i < grad.length; i += Math.max(1, grad.length >> 6))
    assert.ok(
      Math.abs((twice[i] as number) - 2 * (grad[i] as number)) <= 1e-5 * (1 + Math.abs(grad[i] as number)),
    );
}

test('softmax regression: parameter count, zero init gives loss log C, gradients', () => {
  const model = softmaxRegression(6, 4);
  assert.equal(model.numParams, 6 * 4 + 4);
  const rng = new Rng(1);
  const data = denseData(rng, 9, 6, 4);
  const params = model.init(rng);
  assert.ok(
    Math.abs(model.lossAndGrad(params, data, new Float32Array(model.numParams)) - Math.log(4)) < 1e-6,
  );
  checkModel(model, data, 2);
});

test('logistic regression gradients (one logit)', () => {
  const rng = new Rng(3);
  checkModel(logisticRegression(5), denseData(rng, 8, 5, 2), 4);
});

test('mlp with tanh and relu, two hidden layers, batch of 7 (blocking remainders)', () => {
  const rng = new Rng(5);
  checkModel(mlp(9, [8, 5], 3, 'tanh'), denseData(rng, 7, 9, 3), 6);
  checkModel(mlp(9, [6], 3, 'relu'), denseData(rng, 7, 9, 3), 7);
  // Mostly-zero inputs (image-like) take the sparse kernels.
  checkModel(mlp(64, [10], 4, 'relu'), denseData(rng, 5, 64, 4, 0.8), 8);
  // Big enough for the Wasm SIMD kernels (≥ 8192 multiply-adds per layer), odd sizes.
  checkModel(mlp(51, [41], 3, 'tanh'), denseData(rng, 9, 51, 3), 18);
});

test('mlp regression on targets with mse', () => {
  const rng = new Rng(9);
  const base = denseData(rng, 6, 4, 1);
  const targets = Float32Array.from({ length: 12 }, () => rng.normal());
  checkModel(mlp(4, [5], 2, 'tanh', 'mse'), { ...base, targets }, 10);
});

test('cnn: conv→relu→pool blocks and dense head, gradients w.r.t. params and pixels', () => {
  const rng = new Rng(11);
  const model = cnn({ side: 8, channels: 2, conv: [3, 4], kernel: 3, hidden: 6, numClasses: 3 });
  // conv(2→3,3x3)=57, conv(3→4)=112, dense(4·2·2→6)=102, dense(6→3)=21
  assert.equal(model.numParams, 57 + 112 + 102 + 21);
  checkModel(model, denseData(rng, 3, 128, 3), 12, { maxChecks: 80 });
  const valid = cnn({
    side: 10,
    channels: 1,
    conv: [2],
    kernel: 3,
    hidden: 4,
    numClasses: 2,
    padding: 'valid',
  });
  checkModel(valid, denseData(rng, 2, 100, 2), 13);
});

test('embedding bag model: gradients, including repeated ids and an empty bag', () => {
  const rng = new Rng(14);
  const model = embeddingBag({ vocab: 12, embeddingDim: 4, numClasses: 3 });
  assert.equal(model.numParams, 12 * 4 + 4 * 3 + 3);
  const bags: BagExamples = {
    kind: 'bags',
    n: 4,
    vocab: 12,
    offsets: Int32Array.from([0, 3, 3, 6, 8]),
    ids: Int32Array.from([1, 5, 1, 11, 0, 2, 7, 7]),
    y: Int32Array.from([2, 0, 1, 2]),
  };
  checkModel(model, bags, 15, { maxChecks: 200 });
  assert.throws(
    () => model.lossAndGrad(model.init(rng), bags, new Float32Array(model.numParams), new Float32Array(4)),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
});

test('shape errors: wrong params length, wrong feature count, wrong input kind', () => {
  const rng = new Rng(16);
  const model = softmaxRegression(3, 2);
  const params = model.init(rng);
  const data = denseData(rng, 2, 3, 2);
  const isShape = (e: unknown) => e instanceof OrchardError && e.code === 'SHAPE_MISMATCH';
  assert.throws(
    () => model.lossAndGrad(new Float32Array(5), data, new Float32Array(model.numParams)),
    isShape,
  );
  assert.throws(() => model.lossAndGrad(params, data, new Float32Array(3)), isShape);
  assert.throws(() => model.forward(params, denseData(rng, 2, 4, 2)), isShape);
  const bags: BagExamples = {
    kind: 'bags',
    n: 0,
    vocab: 3,
    offsets: Int32Array.from([0]),
    ids: new Int32Array(0),
    y: new Int32Array(0),
  };
  assert.throws(() => model.forward(params, bags), isShape);
});

test('training sanity: softmax regression separates a 3-class Gaussian toy set', () => {
  const rng = new Rng(17);
  const dim = 5;
  const centers = [
    [4, 0, 0, 0, 0],
    [0, 4, 0, 0, 0],
    [0, 0, 4, 0, 0],
  ];
  const n = 300;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    y[i] = c;
    for (let t = 0; t < dim; t++) x[i * dim + t] = (centers[c]?.[t] ?? 0) + rng.normal() * 0.7;
  }
  const data: DenseExamples = { kind: 'dense', n, dim, x, y };
  const model = softmaxRegression(dim, 3);
  const params = model.init(rng);
  const grad = new Float32Array(model.numParams);
  const first = model.lossAndGrad(params, data, grad);
  for (let step = 0; step < 100; step++) {
    grad.fill(0);
    model.lossAndGrad(params, data, grad);
    for (let i = 0; i < params.length; i++) params[i] = (params[i] as number) - 0.5 * (grad[i] as number);
  }
  const last = model.lossAndGrad(params, data, grad.fill(0));
  assert.ok(last < first / 10, `loss ${first} → ${last}`);
  const logits = model.forward(params, data);
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < 3; j++)
      if ((logits[i * 3 + j] as number) > (logits[i * 3 + best] as number)) best = j;
    if (best === y[i]) correct++;
  }
  assert.ok(correct / n >= 0.97, `accuracy ${correct / n}`);
});
