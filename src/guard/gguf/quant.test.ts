import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { decodeTensor, encodeTensor, f16ToF32, f32ToF16, tensorBytes } from './quant.ts';

test('f16 conversion matches IEEE binary16 bit patterns', () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite half
    [70000, 0x7c00], // overflows to +inf
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -14, 0x0400], // smallest normal
    [1e-9, 0x0000], // underflows to zero
    [0.1, 0x2e66],
    [1 + 2 ** -11, 0x3c00], // exact tie between 0x3c00 and 0x3c01: rounds to even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: rounds to even
    [Number.POSITIVE_INFINITY, 0x7c00],
  ];
  for (const [x, bits] of cases) assert.equal(f32ToF16(x), bits, `f16(${x})`);
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(Number.NaN))));
  assert.equal(f16ToF32(0x3555), 0.333251953125);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
});

test('Q8_0 block: scale max|x|/127 in f16, codes round(x·127/max) (hand computed)', () => {
  const x = Float32Array.from({ length: 32 }, (_, j) => j - 16); // -16..15, max |x| = 16
  const out = new Uint8Array(tensorBytes('Q8_0', 32));
  assert.equal(out.length, 34);
  encodeTensor('Q8_0', x, out);
  // d = 16/127 = 0.1259843 → f16: 2^-3 · (1 + 8/1024) = 0.1259765625 = 0x3008.
  assert.equal((out[0] as number) | ((out[1] as number) << 8), 0x3008);
  const q = Int8Array.from(out.subarray(2));
  assert.equal(q[0], -127); // -16 · 127/16
  assert.equal(q[15], -8); // -1 · 7.9375 = -7.94
  assert.equal(q[16], 0);
  assert.equal(q[17], 8); // 7.94
  assert.equal(q[18], 16); // 15.875
  assert.equal(q[31], 119); // 15 · 7.9375 = 119.06
  const back = decodeTensor('Q8_0', out, 32);
  assert.equal(back[0], -127 * 0.1259765625);
  assert.equal(back[31], 119 * 0.1259765625);
});

test('Q4_0 block: scale = (signed max)/-8, codes trunc(x/d + 8.5) capped at 15, nibble layout (hand computed)', () => {
  // x_j = (j mod 16) − 7: the largest magnitude is +8, so d = −1 and every value is exact.
  const x = Float32Array.from({ length: 32 }, (_, j) => (j % 16) - 7);
  const out = new Uint8Array(tensorBytes('Q4_0', 32));
  assert.equal(out.length, 18);
  encodeTensor('Q4_0', x, out);
  assert.deepEqual([out[0], out[1]], [0x00, 0xbc]); // f16(−1) = 0xbc00, little-endian
  // code(x) = trunc(−x + 8.5): x=−7 → 15, x=0 → 8, x=8 → 0; element j low nibble, j+16 high nibble.
  assert.equal(out[2], 0xff);
  assert.equal(out[2 + 7], 0x88);
  assert.equal(out[2 + 15], 0x00);
  assert.deepEqual(
    Array.from(decodeTensor('Q4_0', out, 32), (v) => v + 0), // (8−8)·−1 is −0
    Array.from(x),
  );

  const y = new Float32Array(32);
  y[0] = 1;
  y[1] = 0.3;
  y[20] = -0.49;
  encodeTensor('Q4_0', y, out);
  // d = 1/−8 = −0.125 (exact in f16: 0xb000); 0.3 → trunc(−2.4 + 8.5) = 6 → (6−8)·−0.125 = 0.25;
  // −0.49 → trunc(3.92 + 8.5) = 12 → (12−8)·−0.125 = −0.5; 1 → code 0 → 1.
  assert.deepEqual([out[0], out[1]], [0x00, 0xb0]);
  assert.equal((out[2 + 1] as number) & 0x0f, 6);
  assert.equal((out[2 + 4] as number) >> 4, 12);
  const back = decodeTensor('Q4_0', out, 32);
  assert.equal(back[0], 1);
  assert.equal(back[1], 0.25);
  assert.equal(back[20], -0.5);
  assert.equal(back[2], -0); // code 8: (8−8)·(−0.125)
});

test('random data round-trips within each format’s error bound', () => {
  const rng = new Rng(7);
  const n = 32 * 64;
  const x = Float32Array.from({ length: n }, () => rng.normal() * 3);
  for (const type of ['F32', 'F16', 'Q8_0', 'Q4_0'] as const) {
    const buf = new Uint8Array(tensorBytes(type, n));
    encodeTensor(type, x, buf);
    const back = decodeTensor(type, buf, n);
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j] as number));
      // Half a step (plus the f16 rounding of the scale) bounds the error, except that Q4_0 codes
      // span −8..7 steps: a value of the opposite sign to the max can be off by a whole step.
      const bound = {
        F32: 0,
        F16: amax * 2 ** -11,
        Q8_0: (amax / 127) * 0.51 + amax * 2 ** -10,
        Q4_0: (amax / 8) * 1.01 + amax * 2 ** -9,
      }[type];
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        assert.ok(Math.abs((back[i] as number) - (x[i] as number)) <= bound, `${type}[${i}]`);
      }
    }
  }
  assert.throws(() => tensorBytes('Q4_0', 33), RangeError);
});
