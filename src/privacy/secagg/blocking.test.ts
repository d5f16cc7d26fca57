import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { secureBufferSumBlocking } from './blocking.ts';
import { SecAggError } from './errors.ts';
import { fixedPointFor } from './fixedpoint.ts';

function contributions(k: number, dim: number, seed: number) {
  const rng = new Rng(seed);
  return Array.from({ length: k }, (_, i) => ({
    clientId: 100 + i,
    delta: Float32Array.from({ length: dim }, () => rng.uniform(-1, 1)),
    weight: rng.uniform(0.25, 1),
  }));
}

test('blocking secure buffer sum returns the weighted sum synchronously', () => {
  const k = 5;
  const dim = 40;
  const clip = 2;
  const cs = contributions(k, dim, 3);
  const result = secureBufferSumBlocking(cs, { clip, maxWeight: 1, mode: 'secagg' });
  // Naive plaintext reference, accumulated in float64.
  const step = (k * clip) / (2 ** fixedPointFor(clip, k).valueBits - 1);
  for (let i = 0; i < dim; i++) {
    let want = 0;
    for (const c of cs) want += c.weight * (c.delta[i] as number);
    assert.ok(Math.abs((result.weightedSum[i] as number) - want) <= step + 1e-6, `coordinate ${i}`);
  }
  const totalWeight = cs.reduce((s, c) => s + c.weight, 0);
  assert.ok(Math.abs(result.totalWeight - totalWeight) <= 1e-6);
  assert.deepEqual(result.included, [100, 101, 102, 103, 104]);
  assert.deepEqual(result.dropped, []);
});

test('blocking secure buffer sum excludes dropped clients and rethrows aborts as SecAggError', () => {
  const cs = contributions(5, 8, 4);
  const partial = secureBufferSumBlocking(cs, {
    clip: 2,
    maxWeight: 1,
    mode: 'secagg',
    dropouts: { beforeMaskedInput: new Set([1]) },
  });
  assert.deepEqual(partial.included, [100, 102, 103, 104]);
  assert.deepEqual(partial.dropped, [101]);
  assert.throws(
    () =>
      secureBufferSumBlocking(cs, {
        clip: 2,
        maxWeight: 1,
        mode: 'secagg',
        dropouts: { beforeMaskedInput: [0, 1, 2] },
      }),
    (e: unknown) => e instanceof SecAggError && e.reason === 'BELOW_THRESHOLD',
  );
});
