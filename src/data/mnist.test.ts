import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadMnist, MNIST_DIM } from './mnist.ts';

test('MNIST: 10,000 28x28 images in [0,1], published per-digit counts, cached', () => {
  const m = loadMnist();
  assert.equal(m.n, 10000);
  assert.equal(m.dim, 784);
  assert.equal(m.x.length, 10000 * MNIST_DIM);
  const counts = new Array(10).fill(0);
  for (const y of m.y) counts[y]++;
  // Counts of the package's digit files (data length / 784, checked by hand with a one-off script).
  assert.deepEqual(counts, [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of m.x) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  assert.equal(min, 0);
  assert.ok(max > 0.99 && max <= 1);
  // MNIST's mean pixel intensity is about 0.13 (the usual normalisation constant 0.1307).
  const mean = sum / m.x.length;
  assert.ok(mean > 0.1 && mean < 0.16, `mean pixel ${mean}`);
  // Centre pixels are ink far more often than corner pixels.
  let corner = 0;
  let centre = 0;
  for (let i = 0; i < m.n; i++) {
    corner += m.x[i * MNIST_DIM] as number;
    centre += m.x[i * MNIST_DIM + 14 * 28 + 14] as number;
  }
  assert.equal(corner, 0);
  assert.ok(centre / m.n > 0.3);
  assert.equal(loadMnist(), m);
});
