import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import type { DenseExamples } from '../data/types.ts';
import { createModel, evaluate, softmaxRegression } from './index.ts';
import { ModelSpecSchema } from './spec.ts';

const isConfig = (e: unknown) => e instanceof OrchardError && e.code === 'CONFIG_INVALID';

test('createModel builds each kind from parsed specs', () => {
  const dense = { inputKind: 'dense' as const, inputDim: 784, numClasses: 10 };
  assert.equal(createModel(ModelSpecSchema.parse({ kind: 'softmax' }), dense).numParams, 7850);
  assert.equal(
    createModel(ModelSpecSchema.parse({ kind: 'mlp', hidden: [200] }), dense).numParams,
    784 * 200 + 200 + 200 * 10 + 10,
  );
  const c = createModel(ModelSpecSchema.parse({ kind: 'cnn' }), dense);
  assert.equal(c.inputDim, 784);
  assert.equal(c.numOutputs, 10);
  const e = createModel(ModelSpecSchema.parse({ kind: 'embedding_bag', embeddingDim: 8 }), {
    inputKind: 'bags',
    inputDim: 1000,
    numClasses: 2,
  });
  assert.equal(e.numParams, 1000 * 8 + 8 * 2 + 2);
  assert.equal(e.inputKind, 'bags');
});

test('createModel rejects specs that do not fit the data', () => {
  const dense = { inputKind: 'dense' as const, inputDim: 100, numClasses: 10 };
  assert.throws(() => createModel(ModelSpecSchema.parse({ kind: 'cnn' }), dense), isConfig);
  assert.throws(() => createModel(ModelSpecSchema.parse({ kind: 'embedding_bag' }), dense), isConfig);
  const bagInput = { inputKind: 'bags' as const, inputDim: 100, numClasses: 2 };
  assert.throws(() => createModel(ModelSpecSchema.parse({ kind: 'softmax' }), bagInput), isConfig);
  assert.throws(
    () => createModel(ModelSpecSchema.parse({ kind: 'softmax' }), { ...dense, numClasses: 1 }),
    isConfig,
  );
  assert.throws(
    () =>
      createModel(ModelSpecSchema.parse({ kind: 'cnn', side: 4, conv: [2, 2, 2], kernel: 3 }), {
        ...dense,
        inputDim: 16,
      }),
    isConfig,
  );
});

test('evaluate: chunked accuracy and mean CE equal a direct whole-set computation', () => {
  const rng = new Rng(1);
  const n = 1300; // more than two evaluation chunks
  const dim = 4;
  const x = Float32Array.from({ length: n * dim }, () => rng.normal());
  const y = Int32Array.from({ length: n }, () => rng.int(3));
  const data: DenseExamples = { kind: 'dense', n, dim, x, y };
  const model = softmaxRegression(dim, 3);
  const params = Float32Array.from({ length: model.numParams }, () => rng.normal());
  const ev = evaluate(model, params, data);
  // Direct computation from the definition, in float64.
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const z = [0, 1, 2].map((j) => {
      let s = params[dim * 3 + j] as number;
      for (let t = 0; t < dim; t++) s += (params[j * dim + t] as number) * (x[i * dim + t] as number);
      return s;
    });
    const lse = Math.log(z.reduce((a, v) => a + Math.exp(v), 0));
    loss += lse - (z[y[i] as number] as number);
    if (z.indexOf(Math.max(...z)) === y[i]) correct++;
  }
  assert.equal(ev.n, n);
  assert.ok(Math.abs(ev.loss - loss / n) < 1e-5);
  assert.equal(ev.accuracy, correct / n);
  const capped = evaluate(model, params, data, 10);
  assert.equal(capped.n, 10);
  assert.throws(
    () => evaluate(model, params, data, 0),
    (e: unknown) => e instanceof OrchardError,
  );
});
