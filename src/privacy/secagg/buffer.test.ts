import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { type BufferContribution, secureBufferSum } from './buffer.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { SecAggError } from './errors.ts';

const crypto = new NodeCryptoProvider();

function contributions(k: number, dim: number, seed: number): BufferContribution[] {
  const rng = new Rng(seed);
  return Array.from({ length: k }, (_, u) => ({
    clientId: 1000 + u,
    delta: Float32Array.from({ length: dim }, () => rng.uniform(-0.5, 0.5)),
    weight: rng.uniform(0.1, 2),
  }));
}

/** The plain weighted sum in float64: what the server would compute without secure aggregation. */
function plain(cs: readonly BufferContribution[], ids: readonly number[]) {
  const dim = (cs[0] as BufferContribution).delta.length;
  const sum = new Float64Array(dim);
  let weight = 0;
  for (const c of cs) {
    if (!ids.includes(c.clientId)) continue;
    weight += c.weight;
    for (let i = 0; i < dim; i++) sum[i] = (sum[i] as number) + c.weight * (c.delta[i] as number);
  }
  return { sum, weight };
}

for (const mode of ['secagg', 'secagg+'] as const) {
  test(`${mode} buffer: weighted sum and total weight match the plain computation`, async () => {
    const cs = contributions(24, 30, 1);
    const r = await secureBufferSum(cs, {
      crypto,
      clip: 2,
      maxWeight: 2,
      mode,
      graphSeed: 3,
      dropouts: { beforeMaskedInput: [4, 9] },
    });
    assert.deepEqual(r.dropped, [1004, 1009]);
    assert.equal(r.included.length, 22);
    const want = plain(cs, r.included);
    // 22 clients, step 4 / (2^27 − 1) each (fixedPointFor(2, 24)): error well below 1e-5.
    assert.ok(Math.abs(r.totalWeight - want.weight) < 1e-5, `${r.totalWeight} vs ${want.weight}`);
    for (let i = 0; i < 30; i++)
      assert.ok(Math.abs((r.weightedSum[i] as number) - (want.sum[i] as number)) < 1e-5);
  });
}

test('buffer inputs are validated before any protocol work', async () => {
  const cs = contributions(5, 4, 2);
  const bad = (e: unknown) => e instanceof SecAggError;
  await assert.rejects(
    secureBufferSum(cs.slice(0, 2), { crypto, clip: 1, maxWeight: 2, mode: 'secagg' }),
    bad,
  );
  await assert.rejects(secureBufferSum(cs, { crypto, clip: 1, maxWeight: 1, mode: 'secagg' }), bad);
  const ragged = [...cs.slice(1), { ...(cs[0] as BufferContribution), delta: new Float32Array(3) }];
  await assert.rejects(secureBufferSum(ragged, { crypto, clip: 1, maxWeight: 2, mode: 'secagg' }), bad);
});
