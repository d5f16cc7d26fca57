import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { finiteDifferenceMismatches } from './gradcheck.ts';
import { binaryLogistic, meanSquaredError, softmaxCrossEntropy } from './losses.ts';

test('softmax CE: textbook value log(e + e² + e³) − 1 for logits [1,2,3], label 0', () => {
  const loss = softmaxCrossEntropy(Float32Array.from([1, 2, 3]), Int32Array.from([0]), 1, 3, null, 1);
  assert.ok(Math.abs(loss - 2.40760596444438) < 1e-6);
});

test('softmax CE: huge logits (±1e4) give finite, exact losses and finite gradients', () => {
  const logits = Float32Array.from([1e4, 0, -1e4, 1e4, 1e4, -1e4, -1e4, 1e4, 0]);
  const labels = Int32Array.from([0, 1, 2]);
  const d = new Float32Array(9);
  const total = softmaxCrossEntropy(logits, labels, 3, 3, d, 1);
  // Example 0: correct with margin 1e4 → 0. Example 1: tie of two → log 2. Example 2: 1e4 behind → 1e4.
  assert.ok(Number.isFinite(total));
  assert.ok(Math.abs(total - (0 + Math.LN2 + 1e4)) < 1e-3);
  for (const v of d) assert.ok(Number.isFinite(v));
  assert.ok(Math.abs((d[3] as number) - 0.5) < 1e-7 && Math.abs((d[4] as number) + 0.5) < 1e-7);
  assert.ok(Math.abs((d[7] as number) - 1) < 1e-7 && Math.abs((d[8] as number) + 1) < 1e-7);
});

test('softmax CE gradient matches finite differences; rows sum to zero', () => {
  const rng = new Rng(3);
  const m = 4;
  const c = 5;
  const logits = new Float32Array(m * c);
  for (let i = 0; i < logits.length; i++) logits[i] = rng.normal() * 2;
  const labels = Int32Array.from([0, 4, 2, 2]);
  const d = new Float32Array(m * c);
  softmaxCrossEntropy(logits, labels, m, c, d, 1 / m);
  const f = () => softmaxCrossEntropy(logits, labels, m, c, null, 0) / m;
  assert.deepEqual(
    finiteDifferenceMismatches(
      f,
      logits,
      d,
      Array.from({ length: m * c }, (_, i) => i),
    ),
    [],
  );
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < c; j++) s += d[i * c + j] as number;
    assert.ok(Math.abs(s) < 1e-6);
  }
});

test('softmax CE rejects labels outside [0, c)', () => {
  assert.throws(
    () => softmaxCrossEntropy(new Float32Array(2), Int32Array.from([2]), 1, 2, null, 1),
    (e: unknown) => e instanceof OrchardError && e.code === 'DATA_INVALID',
  );
});

test('binary logistic: stable at ±1e4, log 2 at 0, gradient matches finite differences', () => {
  const z = Float32Array.from([1e4, -1e4, 0, 1e4]);
  const y = Int32Array.from([0, 0, 1, 1]);
  const d = new Float32Array(4);
  const total = binaryLogistic(z, y, 4, d, 1);
  assert.ok(Math.abs(total - (1e4 + 0 + Math.LN2 + 0)) < 1e-6);
  assert.deepEqual([...d], [1, 0, -0.5, 0]);
  const rng = new Rng(4);
  const z2 = Float32Array.from({ length: 6 }, () => rng.normal() * 3);
  const y2 = Int32Array.from([0, 1, 1, 0, 1, 0]);
  const d2 = new Float32Array(6);
  binaryLogistic(z2, y2, 6, d2, 1);
  const f = () => binaryLogistic(z2, y2, 6, null, 0);
  assert.deepEqual(finiteDifferenceMismatches(f, z2, d2, [0, 1, 2, 3, 4, 5]), []);
});

test('mse: per-example mean of squared errors, summed; gradient 2(o−t)/c', () => {
  const o = Float32Array.from([1, 2, 3, 4]);
  const t = Float32Array.from([0, 2, 5, 4]);
  const d = new Float32Array(4);
  const total = meanSquaredError(o, t, 2, 2, d, 1);
  assert.equal(total, (1 + 0) / 2 + (4 + 0) / 2);
  assert.deepEqual([...d], [1, 0, -2, 0]);
});
