import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { convolve, convolveDirect, fft } from './fft.ts';

function randomArray(rng: Rng, n: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next();
  return a;
}

test('fft matches a naive O(n²) DFT', () => {
  const rng = new Rng(7);
  const n = 64;
  const re = randomArray(rng, n);
  const im = randomArray(rng, n);
  const wantRe = new Float64Array(n);
  const wantIm = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    for (let j = 0; j < n; j++) {
      const angle = (-2 * Math.PI * j * k) / n;
      wantRe[k] =
        (wantRe[k] as number) + (re[j] as number) * Math.cos(angle) - (im[j] as number) * Math.sin(angle);
      wantIm[k] =
        (wantIm[k] as number) + (re[j] as number) * Math.sin(angle) + (im[j] as number) * Math.cos(angle);
    }
  }
  fft(re, im);
  for (let k = 0; k < n; k++) {
    assert.ok(Math.abs((re[k] as number) - (wantRe[k] as number)) < 1e-12);
    assert.ok(Math.abs((im[k] as number) - (wantIm[k] as number)) < 1e-12);
  }
});

test('inverse fft undoes the forward transform', () => {
  const rng = new Rng(8);
  const re = randomArray(rng, 1024);
  const im = randomArray(rng, 1024);
  const re0 = re.slice();
  const im0 = im.slice();
  fft(re, im);
  fft(re, im, true);
  for (let i = 0; i < re.length; i++) {
    assert.ok(Math.abs((re[i] as number) - (re0[i] as number)) < 1e-13);
    assert.ok(Math.abs((im[i] as number) - (im0[i] as number)) < 1e-13);
  }
});

test('fft rejects lengths that are not powers of two', () => {
  assert.throws(() => fft(new Float64Array(6), new Float64Array(6)), /power of two/);
  assert.throws(() => fft(new Float64Array(8), new Float64Array(4)), /differ/);
});

test('FFT convolution equals direct convolution (distinct inputs and squaring)', () => {
  const rng = new Rng(9);
  const a = randomArray(rng, 301); // 301·400 > the direct-path limit, so the FFT path runs
  const b = randomArray(rng, 400);
  const got = convolve(a, b);
  const want = convolveDirect(a, b);
  assert.equal(got.length, 700);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs((got[i] as number) - (want[i] as number)) < 1e-10);
  const sq = convolve(b, b);
  const sqWant = convolveDirect(b, b);
  for (let i = 0; i < sqWant.length; i++)
    assert.ok(Math.abs((sq[i] as number) - (sqWant[i] as number)) < 1e-10);
  // Small inputs take the direct path: [1, 2] * [3, 4, 5] = [3, 10, 13, 10].
  assert.deepEqual([...convolve(Float64Array.of(1, 2), Float64Array.of(3, 4, 5))], [3, 10, 13, 10]);
});
