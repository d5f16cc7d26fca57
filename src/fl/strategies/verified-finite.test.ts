/**
 * The `verifiedFinite` flag: an update whose sender already proved it finite (the server's
 * aggregator, in its norm pass) is not scanned again; every other update still is.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkUpdate } from './common.ts';
import { FedBuff } from './fedbuff.ts';

const N = 5;

function strategy(): FedBuff {
  return new FedBuff(
    {
      bufferSize: 10,
      staleness: { kind: 'constant' },
      maxStaleness: 10,
      serverOptimizer: { kind: 'sgd', lr: 1 },
    },
    new Float32Array(N),
  );
}

test('an unverified update with NaN or Infinity is still refused as non_finite', () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const s = strategy();
    s.assign(1, 0);
    const delta = new Float32Array(N);
    delta[3] = bad;
    const outcome = s.onUpdate({ clientId: 1, baseVersion: 0, delta, numExamples: 1 }, 0);
    assert.equal(outcome.kind, 'rejected');
    assert.equal(outcome.kind === 'rejected' ? outcome.reason : '', 'non_finite');
  }
});

test('a verified update is not rescanned: checkUpdate and FedBuff take the flag at its word', () => {
  // The server never flags a non-finite update; a NaN smuggled in under the flag shows that no second
  // pass over the floats runs (with the pass it would be refused, as the unflagged twin is).
  const delta = Float32Array.from([0, 1, Number.NaN, 2, 3]);
  const plain = { clientId: 1, baseVersion: 0, delta, numExamples: 1 };
  assert.equal(checkUpdate(plain, N, 0, 0)?.reason, 'non_finite');
  assert.equal(checkUpdate({ ...plain, verifiedFinite: true }, N, 0, 0), null);
  // Other checks still apply to a flagged update.
  assert.equal(
    checkUpdate({ ...plain, verifiedFinite: true, delta: new Float32Array(N + 1) }, N, 0, 0)?.reason,
    'shape',
  );
  const s = strategy();
  s.assign(1, 0);
  const outcome = s.onUpdate({ ...plain, verifiedFinite: true }, 0);
  assert.equal(outcome.kind, 'accepted');
});

test('a flagged update is not read element by element for finiteness (counted reads)', () => {
  // Count element reads of the delta through a proxy.
  let reads = 0;
  const values = Float32Array.from({ length: N }, (_, i) => i + 1);
  const counting = new Proxy(values, {
    get(target, prop) {
      if (typeof prop === 'string' && /^\d+$/.test(prop)) reads++;
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  }) as Float32Array;
  const run = (flag: boolean) => {
    reads = 0;
    const u = { clientId: 1, baseVersion: 0, delta: counting, numExamples: 1 };
    return checkUpdate(flag ? { ...u, verifiedFinite: true } : u, N, 0, 0);
  };
  assert.equal(run(false), null);
  assert.equal(reads, N, 'unflagged: every value is scanned once');
  assert.equal(run(true), null);
  assert.equal(reads, 0, 'flagged: no value is scanned');
});
