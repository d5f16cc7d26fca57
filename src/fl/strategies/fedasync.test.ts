import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../../core/errors.ts';
import type { ClientUpdate, UpdateOutcome } from '../types.ts';
import { FedAsync } from './fedasync.ts';

const upd = (clientId: number, baseVersion: number, delta: number[]): ClientUpdate => ({
  clientId,
  baseVersion,
  delta: Float32Array.from(delta),
  numExamples: 10,
});

function ok(out: UpdateOutcome): Extract<UpdateOutcome, { kind: 'accepted' }> {
  assert.equal(out.kind, 'accepted', out.kind === 'rejected' ? out.message : '');
  return out as Extract<UpdateOutcome, { kind: 'accepted' }>;
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `[${i}]: ${a[i]} vs ${b[i]}`);
}

test('each update mixes x ← x − α·w(s)·delta, one version per update (hand values)', () => {
  const fa = new FedAsync(
    { alpha: 0.5, staleness: { kind: 'polynomial', exponent: 1 }, maxStaleness: 10 },
    Float32Array.from([1, 1]),
  );
  const a = fa.assign(1, 0);
  fa.assign(2, 0);
  const first = ok(fa.onUpdate(upd(1, 0, [2, 0]), 1));
  assert.equal(first.staleness, 0);
  assert.equal(first.weight, 0.5);
  assert.equal(first.stepped, true);
  assertClose(fa.params, [0, 1], 1e-7);
  // Client 2 is now one version stale: α_s = 0.5 · 1/2.
  const second = ok(fa.onUpdate(upd(2, 0, [0, 4]), 2));
  assert.equal(second.staleness, 1);
  assert.equal(second.weight, 0.25);
  assert.equal(second.version, 2);
  assertClose(fa.params, [0, 0], 1e-7);
  // The snapshot client 1 trained from is untouched.
  assert.deepEqual(a.params, Float32Array.from([1, 1]));
});

test('with the client model as x_client, FedAsync is the paper’s convex mixing when not stale', () => {
  const x = Float32Array.from([0.3, -1.2, 4]);
  const xClient = Float32Array.from([1, 1, 1]);
  const alpha = 0.6;
  const fa = new FedAsync({ alpha, staleness: { kind: 'constant' }, maxStaleness: 0 }, x);
  fa.assign(7, 0);
  const delta = Array.from(x, (v, i) => v - (xClient[i] as number));
  ok(fa.onUpdate(upd(7, 0, delta), 0));
  assertClose(
    fa.params,
    Array.from(x, (v, i) => (1 - alpha) * v + alpha * (xClient[i] as number)),
    1e-6,
  );
});

test('FedAsync rejections change nothing', () => {
  const fa = new FedAsync(
    { alpha: 0.5, staleness: { kind: 'constant' }, maxStaleness: 0 },
    Float32Array.from([1, 2]),
  );
  const expect = (u: ClientUpdate, reason: string) => {
    const before = fa.params;
    const copy = new Float32Array(before);
    const v = fa.version;
    const out = fa.onUpdate(u, 0);
    assert.equal(out.kind === 'rejected' && out.reason, reason);
    assert.equal(fa.params, before);
    assert.deepEqual(fa.params, copy);
    assert.equal(fa.version, v);
  };
  expect(upd(1, 0, [1, 1]), 'not_assigned');
  fa.assign(1, 0);
  expect(upd(1, 0, [1]), 'shape');
  fa.assign(2, 0);
  expect(upd(2, 0, [Number.NaN, 1]), 'non_finite');
  fa.assign(3, 0);
  expect(upd(3, 4, [1, 1]), 'unknown_version');
  fa.assign(4, 0);
  fa.assign(5, 0);
  ok(fa.onUpdate(upd(4, 0, [1, 1]), 0));
  expect(upd(4, 0, [1, 1]), 'not_assigned');
  expect(upd(5, 0, [1, 1]), 'stale');
  fa.assign(6, 0);
  fa.onDropout(6, 0);
  expect(upd(6, 1, [1, 1]), 'not_assigned');
});

test('bad alpha is a config error', () => {
  assert.throws(
    () => new FedAsync({ alpha: 0, staleness: { kind: 'constant' }, maxStaleness: 1 }, new Float32Array(1)),
    (e: unknown) => e instanceof OrchardError && e.code === 'CONFIG_INVALID',
  );
});
