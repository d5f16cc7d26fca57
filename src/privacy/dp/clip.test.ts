import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, NonFiniteError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { clipL2, finiteL2Norm } from './clip.ts';

test('an update above the bound is scaled onto it; the input is untouched', () => {
  const update = Float32Array.of(3, 4);
  const r = clipL2(update, 1);
  assert.equal(r.norm, 5);
  assert.equal(r.scale, 0.2);
  assert.equal(r.wasClipped, true);
  assert.ok(
    Math.abs((r.clipped[0] as number) - 0.6) < 1e-7 && Math.abs((r.clipped[1] as number) - 0.8) < 1e-7,
  );
  assert.deepEqual([...update], [3, 4]);
});

test('an update within the bound is copied unchanged (into a new array unless in place)', () => {
  const update = Float32Array.of(0.1, -0.2, 0.3);
  const r = clipL2(update, 1);
  assert.equal(r.wasClipped, false);
  assert.equal(r.scale, 1);
  assert.notEqual(r.clipped, update);
  assert.deepEqual([...r.clipped], [...update]);
  const inPlace = Float32Array.of(6, 8);
  const r2 = clipL2(inPlace, 5, inPlace);
  assert.equal(r2.clipped, inPlace);
  assert.ok(Math.abs((inPlace[0] as number) - 3) < 1e-6 && Math.abs((inPlace[1] as number) - 4) < 1e-6);
});

test('random updates: clipped norm ≤ bound, direction kept', () => {
  const rng = new Rng(11);
  for (let trial = 0; trial < 20; trial++) {
    const d = 1 + Math.floor(rng.next() * 500);
    const u = new Float32Array(d);
    for (let i = 0; i < d; i++) u[i] = (rng.next() - 0.5) * 10;
    const bound = 0.5 + rng.next() * 5;
    const { clipped, norm } = clipL2(u, bound);
    let n2 = 0;
    let dotUC = 0;
    for (let i = 0; i < d; i++) {
      n2 += (clipped[i] as number) ** 2;
      dotUC += (clipped[i] as number) * (u[i] as number);
    }
    const clippedNorm = Math.sqrt(n2);
    assert.ok(clippedNorm <= bound * (1 + 1e-6), `norm ${clippedNorm} > ${bound}`);
    assert.ok(Math.abs(clippedNorm - Math.min(norm, bound)) < 1e-5 * bound);
    assert.ok(dotUC / (clippedNorm * norm) > 1 - 1e-6, 'direction changed');
  }
});

test('fails closed: NaN / Infinity are rejected and nothing is written', () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const update = Float32Array.of(1, 2, bad, 4);
    const before = [...update];
    const out = new Float32Array(4).fill(7);
    assert.throws(() => clipL2(update, 1, out), NonFiniteError);
    assert.throws(() => clipL2(update, 1, update), NonFiniteError);
    assert.deepEqual([...update].map(String), before.map(String));
    assert.deepEqual([...out], [7, 7, 7, 7]);
  }
  // A norm that overflows is not finite either.
  assert.throws(() => finiteL2Norm(Float64Array.of(1e200, 1e200)), NonFiniteError);
  assert.equal(finiteL2Norm(Float64Array.of(3e38, 4e38)), 5e38);
});

test('invalid clipping bounds and output buffers are ConfigErrors', () => {
  const u = Float32Array.of(1, 2);
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY])
    assert.throws(() => clipL2(u, bad), ConfigError);
  assert.throws(() => clipL2(u, 1, new Float32Array(3)), ConfigError);
});
