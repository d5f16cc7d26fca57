import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NonFiniteError, OrchardError, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { bilinear, elasticDeform, invertImage, rotateImage } from './shift.ts';

function randomImage(side: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: side * side }, () => rng.next());
}

function close(a: Float32Array, b: Float32Array, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `pixel ${i}: ${a[i]} vs ${b[i]}`);
}

for (const side of [5, 6]) {
  test(`rotation by ±90° and 180° equals transpose/flip (side ${side})`, () => {
    const img = randomImage(side, side);
    const at = (r: number, c: number) => img[r * side + c] as number;
    // Counter-clockwise by 90°: the top-right pixel moves to the top-left, i.e. out[r][c] = in[c][n−1−r].
    const ccw = new Float32Array(side * side);
    const cw = new Float32Array(side * side);
    const half = new Float32Array(side * side);
    for (let r = 0; r < side; r++)
      for (let c = 0; c < side; c++) {
        ccw[r * side + c] = at(c, side - 1 - r);
        cw[r * side + c] = at(side - 1 - c, r);
        half[r * side + c] = at(side - 1 - r, side - 1 - c);
      }
    close(rotateImage(img, side, 90), ccw, 1e-5);
    close(rotateImage(img, side, -90), cw, 1e-5);
    close(rotateImage(img, side, 180), half, 1e-5);
    assert.deepEqual(rotateImage(img, side, 0), img);
  });
}

test('bilinear interpolation: exact at pixels, averages at midpoints, zero outside', () => {
  const img = randomImage(4, 1);
  assert.equal(bilinear(img, 4, 2, 1), img[9]);
  const mid = ((img[5] as number) + (img[6] as number) + (img[9] as number) + (img[10] as number)) / 4;
  assert.ok(Math.abs(bilinear(img, 4, 1.5, 1.5) - mid) < 1e-6);
  assert.equal(bilinear(img, 4, -1.5, 2), 0);
  assert.equal(bilinear(img, 4, 2, 5), 0);
});

test('rotation by 45° keeps a centred disc (nearly) unchanged', () => {
  const side = 15;
  const disc = new Float32Array(side * side);
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) disc[r * side + c] = Math.hypot(r - 7, c - 7) <= 4 ? 1 : 0;
  const rot = rotateImage(disc, side, 45);
  const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
  assert.ok(Math.abs(sum(rot) - sum(disc)) / sum(disc) < 0.1);
  assert.equal(rot[7 * side + 7], 1);
  assert.equal(rot[0], 0);
});

test('inverting twice gives the image back; 0 and 1 swap', () => {
  const img = randomImage(7, 3);
  close(invertImage(invertImage(img)), img, 1e-7);
  assert.deepEqual(invertImage(Float32Array.of(0, 1, 0.25)), Float32Array.of(1, 0, 0.75));
});

test('elastic deformation: α = 0 is the identity, seeded, stays in [0, 1]', () => {
  const side = 12;
  const img = randomImage(side, 9);
  assert.deepEqual(elasticDeform(img, side, { alpha: 0, sigma: 3 }, new Rng(1)), img);
  const a = elasticDeform(img, side, { alpha: 8, sigma: 3 }, new Rng(2));
  const b = elasticDeform(img, side, { alpha: 8, sigma: 3 }, new Rng(2));
  const c = elasticDeform(img, side, { alpha: 8, sigma: 3 }, new Rng(3));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a, img);
  // Bilinear weights are a convex combination (with zero padding), so values stay in [0, 1].
  assert.ok(a.every((v) => v >= 0 && v <= 1 + 1e-6));
});

test('bad images and parameters are typed errors', () => {
  const img = randomImage(4, 1);
  assert.throws(() => rotateImage(img, 5, 10), ShapeError);
  assert.throws(() => rotateImage(img, 4, Number.NaN), NonFiniteError);
  assert.throws(
    () => elasticDeform(img, 4, { alpha: 1, sigma: 0 }, new Rng(1)),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
  assert.throws(() => elasticDeform(img, 4, { alpha: Number.NaN, sigma: 1 }, new Rng(1)), OrchardError);
});
