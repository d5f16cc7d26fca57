import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { DenseExamples } from '../../data/types.ts';
import { evaluate } from '../../nn/index.ts';
import { mlp } from '../../nn/models.ts';
import { maskedModel } from './mask.ts';
import { type ImpOptions, iterativeMagnitudePruning, trainSteps } from './train.ts';

function blobs(n: number, seed: number): DenseExamples {
  const rng = new Rng(seed);
  const dim = 8;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(3);
    for (let j = 0; j < dim; j++) x[i * dim + j] = 0.5 * rng.normal() + (j === y[i] ? 2 : 0);
  }
  return { kind: 'dense', n, dim, x, y };
}

const train = { steps: 60, batchSize: 16, lr: 0.1, momentum: 0.9, seed: 4 };

test('a snapshot at step k is exactly the result of training for k steps', () => {
  const model = mlp(8, [10], 3);
  const data = blobs(100, 1);
  const init = model.init(new Rng(2));
  const long = trainSteps(model, init, data, train, [0, 17]);
  const short = trainSteps(model, init, data, { ...train, steps: 17 });
  assert.deepEqual(long.snapshots.get(17), short.params);
  assert.deepEqual(long.snapshots.get(0), init);
  assert.ok(evaluate(model, long.params, data).accuracy > 0.9, 'the trainer learns an easy problem');
});

test('IMP rewinds survivors to θk, keeps masks nested and reaches the scheduled sparsity', () => {
  const model = mlp(8, [10], 3); // 80 + 30 prunable weights
  const data = blobs(120, 3);
  const init = model.init(new Rng(6));
  const options: ImpOptions = {
    rounds: 3,
    prune: { rate: 0.4, scope: 'global' },
    rewindStep: 5,
    train,
  };
  const result = iterativeMagnitudePruning(model, init, data, options);
  assert.deepEqual(result.init, init);
  assert.deepEqual(result.rewind, trainSteps(model, init, data, { ...train, steps: 5 }).params);
  let kept = 110;
  for (let r = 1; r <= 3; r++) {
    const round = result.rounds[r];
    const prev = result.rounds[r - 1];
    assert.ok(round !== undefined && prev !== undefined);
    kept -= Math.round(0.4 * kept);
    assert.equal(round.mask.kept(['weight']), kept);
    for (let i = 0; i < model.numParams; i++)
      assert.ok((round.mask.bits[i] as number) <= (prev.mask.bits[i] as number));
    assert.ok(round.mask.zeroOutside(round.trained));
    // Retraining the ticket from θk ⊙ m reproduces the round exactly: IMP rewound to the saved weights.
    const again = trainSteps(maskedModel(model, round.mask), round.mask.applied(result.rewind), data, train);
    assert.deepEqual(round.trained, again.params);
  }
  const zeroRewind = iterativeMagnitudePruning(model, init, data, { ...options, rounds: 1, rewindStep: 0 });
  assert.deepEqual(zeroRewind.rewind, init);
});

test('bad training and IMP options are ConfigErrors', () => {
  const model = mlp(8, [4], 3);
  const data = blobs(20, 1);
  const init = model.init(new Rng(1));
  for (const bad of [
    { steps: 0 },
    { batchSize: 1.5 },
    { lr: Number.NaN },
    { lr: -1 },
    { momentum: 1 },
    { seed: 0.5 },
  ])
    assert.throws(
      () => trainSteps(model, init, data, { ...train, ...bad }),
      ConfigError,
      JSON.stringify(bad),
    );
  assert.throws(() => trainSteps(model, init, data, train, [61]), ConfigError);
  assert.throws(
    () => trainSteps(model, init.subarray(1), data, train),
    (e: unknown) => e instanceof OrchardError,
  );
  const imp: ImpOptions = { rounds: 2, prune: { rate: 0.2, scope: 'layer' }, rewindStep: 0, train };
  assert.throws(() => iterativeMagnitudePruning(model, init, data, { ...imp, rounds: 0 }), ConfigError);
  assert.throws(() => iterativeMagnitudePruning(model, init, data, { ...imp, rewindStep: 61 }), ConfigError);
  assert.throws(
    () => iterativeMagnitudePruning(model, init, data, { ...imp, prune: { rate: 1, scope: 'layer' } }),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
});
