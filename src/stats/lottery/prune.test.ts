import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { mlp } from '../../nn/models.ts';
import { Mask, type ParamSegment } from './mask.ts';
import { magnitudePrune, randomMaskLike } from './prune.ts';

const isInvalid = (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT';

function randomParams(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

function keptIn(mask: Mask, segs: readonly ParamSegment[]): number {
  let k = 0;
  for (const s of segs) for (const b of mask.view(s)) k += b;
  return k;
}

test('global rounds leave (1 − rate)^rounds of the weights, within rounding', () => {
  const model = mlp(30, [20], 10); // 600 + 200 prunable weights
  let mask = Mask.dense(model);
  const total = mask.total(['weight']);
  const rate = 0.2;
  for (let r = 1; r <= 8; r++) {
    const before = mask.kept(['weight']);
    mask = magnitudePrune(mask, randomParams(model.numParams, r), { rate, scope: 'global' });
    const after = mask.kept(['weight']);
    assert.equal(before - after, Math.round(rate * before), `round ${r} removes round(rate · kept)`);
    // Each round's rounding moves the count by at most 1/2.
    assert.ok(Math.abs(after - total * (1 - rate) ** r) <= r / 2 + 1e-9, `round ${r}: ${after}`);
    assert.equal(mask.kept(['bias']), mask.total(['bias']), 'biases are kept by default');
  }
});

test('global pruning removes exactly the smallest magnitudes (threshold check)', () => {
  const model = mlp(12, [9], 4);
  const params = randomParams(model.numParams, 4);
  const mask = magnitudePrune(Mask.dense(model), params, { rate: 0.35, scope: 'global' });
  let maxPruned = 0;
  let minKept = Number.POSITIVE_INFINITY;
  for (const s of mask.segments) {
    if (s.role === 'bias') continue;
    for (let i = s.offset; i < s.offset + s.length; i++) {
      const m = Math.abs(params[i] as number);
      if (mask.bits[i] === 0) maxPruned = Math.max(maxPruned, m);
      else minKept = Math.min(minKept, m);
    }
  }
  assert.ok(maxPruned <= minKept, `${maxPruned} <= ${minKept}`);
});

test('per-layer pruning hits the rate in every layer; global does not when scales differ', () => {
  const model = mlp(20, [16], 8); // layer 0: 320 weights, layer 1: 128 weights
  const params = randomParams(model.numParams, 2);
  const segs = Mask.dense(model).segments;
  const w0 = segs.filter((s) => s.layer === 0 && s.role === 'weight');
  const w1 = segs.filter((s) => s.layer === 1 && s.role === 'weight');
  for (const s of w0)
    for (let i = s.offset; i < s.offset + s.length; i++) params[i] = (params[i] as number) * 10;
  let layer = Mask.dense(model);
  let global = Mask.dense(model);
  const k0 = [320];
  const k1 = [128];
  for (let r = 1; r <= 3; r++) {
    layer = magnitudePrune(layer, params, { rate: 0.5, scope: 'layer' });
    global = magnitudePrune(global, params, { rate: 0.5, scope: 'global' });
    k0.push((k0[r - 1] as number) - Math.round(0.5 * (k0[r - 1] as number)));
    k1.push((k1[r - 1] as number) - Math.round(0.5 * (k1[r - 1] as number)));
    assert.equal(keptIn(layer, w0), k0[r]);
    assert.equal(keptIn(layer, w1), k1[r]);
  }
  // Layer 0 is 10× larger, so global magnitude pruning takes layer 1 first.
  assert.ok(keptIn(global, w0) > (k0[3] as number));
  assert.ok(keptIn(global, w1) < (k1[3] as number));
  assert.equal(global.kept(['weight']), 448 / 8, 'three halvings of 448 weights');
});

test('pruning is monotone: a pruned entry never comes back', () => {
  const model = mlp(10, [6], 3);
  let mask = Mask.dense(model);
  for (let r = 0; r < 4; r++) {
    const next = magnitudePrune(mask, randomParams(model.numParams, 10 + r), { rate: 0.3, scope: 'layer' });
    for (let i = 0; i < mask.numParams; i++) assert.ok((next.bits[i] as number) <= (mask.bits[i] as number));
    mask = next;
  }
});

test('includeBiases lets small biases be pruned', () => {
  const model = mlp(10, [6], 3);
  const params = randomParams(model.numParams, 3);
  const biases = Mask.dense(model).segments.filter((s) => s.role === 'bias');
  for (const s of biases) params.fill(1e-6, s.offset, s.offset + s.length);
  const without = magnitudePrune(Mask.dense(model), params, { rate: 0.3, scope: 'global' });
  const withB = magnitudePrune(Mask.dense(model), params, {
    rate: 0.3,
    scope: 'global',
    includeBiases: true,
  });
  assert.equal(keptIn(without, biases), 9);
  assert.equal(keptIn(withB, biases), 0);
});

test('random masks copy per-segment kept counts, at different positions', () => {
  const model = mlp(16, [12], 5);
  const ticket = magnitudePrune(Mask.dense(model), randomParams(model.numParams, 1), {
    rate: 0.7,
    scope: 'global',
  });
  const rand = randomMaskLike(ticket, new Rng(3));
  assert.deepEqual(
    rand.segmentSparsity().map((s) => s.kept),
    ticket.segmentSparsity().map((s) => s.kept),
  );
  assert.ok(!rand.equals(ticket));
  assert.ok(randomMaskLike(ticket, new Rng(3)).equals(rand), 'seeded');
});

test('bad rates, lengths and NaN weights are typed errors that change nothing', () => {
  const model = mlp(6, [4], 2);
  const mask = Mask.dense(model);
  const copy = Uint8Array.from(mask.bits);
  const params = randomParams(model.numParams, 1);
  for (const rate of [0, 1, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
    assert.throws(() => magnitudePrune(mask, params, { rate, scope: 'global' }), isInvalid, `rate ${rate}`);
  assert.throws(() => magnitudePrune(mask, params.subarray(1), { rate: 0.2, scope: 'global' }), ShapeError);
  const withNaN = Float32Array.from(params);
  withNaN[3] = Number.NaN;
  assert.throws(() => magnitudePrune(mask, withNaN, { rate: 0.2, scope: 'layer' }), NonFiniteError);
  assert.throws(() => magnitudePrune(mask, params, { rate: 0.2, scope: 'nope' as 'global' }), isInvalid);
  assert.deepEqual(mask.bits, copy);
});
