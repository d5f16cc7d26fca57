import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpdateArena } from '../fl/wasm.ts';
import { Rng } from './rng.ts';
import { resumableSumsqFor, sumOfSquaresInMemory, sumsqSimdAvailable } from './sumsq.ts';

const skip = !sumsqSimdAvailable() && 'no Wasm SIMD in this runtime';

/** Independent reference: the values widened to a Float64Array, one float64 running sum. */
function reference(x: Float32Array): number {
  const wide = Float64Array.from(x);
  let s = 0;
  for (let i = 0; i < wide.length; i++) s += (wide[i] as number) * (wide[i] as number);
  return s;
}

/** Sums of n non-negative float64 terms differ from the exact sum by at most ~n·ε relative each. */
function assertClose(actual: number | null, expected: number, n: number, what: string): void {
  assert.ok(actual !== null, `${what}: kernel unavailable`);
  const tolerance = 2 * (n + 1) * Number.EPSILON * expected;
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} vs reference ${expected} (tolerance ${tolerance})`,
  );
}

function sharedMemory(pages: number): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: pages, maximum: 4 * pages, shared: true });
}

const LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 1001, 4099, 100_000];

test('sum of squares matches a float64 reference for every length and float offset', { skip }, () => {
  const memory = sharedMemory(8); // 512 KiB
  const all = new Float32Array(memory.buffer);
  const rng = new Rng(11);
  for (const n of LENGTHS)
    for (let start = 0; start < 8; start++) {
      // Views start at any multiple of 4 bytes, not only of 16; NaN around the view must not leak in.
      all.fill(Number.NaN);
      const x = all.subarray(start + 1, start + 1 + n);
      for (let i = 0; i < n; i++) x[i] = rng.normal() * 3;
      const got = sumOfSquaresInMemory(memory, x);
      if (n === 0) assert.equal(got, 0);
      else assertClose(got, reference(x), n, `n=${n} start=${start}`);
    }
});

test('huge finite, tiny and mixed-magnitude values stay finite and accurate', { skip }, () => {
  const memory = sharedMemory(2);
  const rng = new Rng(12);
  const F32_MAX = 3.4028234663852886e38;
  for (const n of [1, 5, 16, 37, 1000]) {
    const x = new Float32Array(memory.buffer, 4, n);
    for (let i = 0; i < n; i++) {
      const pick = rng.int(4);
      x[i] =
        pick === 0
          ? (rng.next() < 0.5 ? -1 : 1) * F32_MAX
          : pick === 1
            ? rng.normal() * 1e-40 // float32 subnormals
            : pick === 2
              ? rng.normal() * 1e30
              : rng.normal();
    }
    const expected = reference(x);
    assert.ok(Number.isFinite(expected));
    const got = sumOfSquaresInMemory(memory, x);
    assert.ok(got !== null && Number.isFinite(got), `n=${n}: ${got}`);
    assertClose(got, expected, n, `n=${n}`);
  }
  // All at the float32 maximum: 1000 · 1.16e77, far from float64 overflow.
  const x = new Float32Array(memory.buffer, 8, 1000).fill(-F32_MAX);
  assertClose(sumOfSquaresInMemory(memory, x), 1000 * F32_MAX * F32_MAX, 1000, 'all max');
});

test('NaN and ±Infinity anywhere make the result non-finite (NaN wins over Infinity)', { skip }, () => {
  const memory = sharedMemory(1);
  const rng = new Rng(13);
  for (const n of [1, 3, 16, 37, 70]) {
    const x = new Float32Array(memory.buffer, 12, n);
    for (let at = 0; at < n; at++) {
      for (let i = 0; i < n; i++) x[i] = rng.normal();
      x[at] = Number.NaN;
      assert.ok(Number.isNaN(sumOfSquaresInMemory(memory, x)), `NaN at ${at} of ${n}`);
      x[at] = Number.POSITIVE_INFINITY;
      assert.equal(sumOfSquaresInMemory(memory, x), Number.POSITIVE_INFINITY, `+Inf at ${at} of ${n}`);
      x[at] = Number.NEGATIVE_INFINITY;
      assert.equal(sumOfSquaresInMemory(memory, x), Number.POSITIVE_INFINITY, `-Inf at ${at} of ${n}`);
      x[(at + 1) % n] = Number.NaN; // with n = 1 this overwrites the -Inf: NaN either way
      assert.ok(Number.isNaN(sumOfSquaresInMemory(memory, x)), `NaN and -Inf in ${n}`);
    }
  }
});

test('views of an arena stay summable after the memory grows', { skip }, () => {
  const arena = new UpdateArena(1 << 16);
  const rng = new Rng(14);
  const first = arena.alloc(10_001);
  for (let i = 0; i < first.length; i++) first[i] = rng.normal();
  const grown = arena.alloc(300_000); // forces growth: `first` is a view of the old buffer object
  for (let i = 0; i < grown.length; i++) grown[i] = rng.normal();
  assert.notEqual(first.buffer, arena.memory.buffer);
  assertClose(sumOfSquaresInMemory(arena.memory, first), reference(first), first.length, 'old view');
  const tail = grown.subarray(3, 299_990);
  assertClose(sumOfSquaresInMemory(arena.memory, tail), reference(tail), tail.length, 'new view');
});

test('returns null where the kernel cannot serve the view', { skip }, () => {
  const unshared = new WebAssembly.Memory({ initial: 1 });
  assert.equal(sumOfSquaresInMemory(unshared, new Float32Array(unshared.buffer, 0, 4)), null);
  const memory = sharedMemory(1);
  const beyond = new Float32Array(new SharedArrayBuffer(2 * 65536), 65536 - 8, 4);
  assert.equal(sumOfSquaresInMemory(memory, beyond), null);
});

test('the resumable kernel over consecutive pieces equals one call over the whole, bit for bit', {
  skip,
}, () => {
  const memory = sharedMemory(16); // 1 MiB
  const sumsq = resumableSumsqFor(memory);
  assert.ok(sumsq !== null);
  const STATE = 64; // 128 bytes of running sums
  const all = new Float32Array(memory.buffer);
  const rng = new Rng(13);
  for (const n of [...LENGTHS, 100_003]) {
    for (const start of [48, 49, 51]) {
      const x = all.subarray(start, start + n);
      for (let i = 0; i < n; i++) x[i] = rng.normal() * 10 ** rng.int(6);
      const whole = sumOfSquaresInMemory(memory, x);
      // Several random splits into pieces of whole 16-float steps, then the rest.
      for (let trial = 0; trial < 4; trial++) {
        new Uint8Array(memory.buffer, STATE, 128).fill(0);
        let at = 0;
        while (n - at >= 16 && rng.next() < 0.8) {
          const steps = 1 + rng.int(Math.min(400, Math.floor((n - at) / 16)));
          assert.equal(sumsq(x.byteOffset + 4 * at, 16 * steps, STATE, 0), 0);
          at += 16 * steps;
        }
        const got = sumsq(x.byteOffset + 4 * at, n - at, STATE, 1);
        assert.ok(Object.is(got, whole), `n=${n} start=${start} split ${trial}: ${got} vs ${whole}`);
        if (n > 0) assertClose(got, reference(x), n, `n=${n} start=${start}`);
      }
    }
  }
});

test('the resumable kernel propagates NaN and Infinity from any piece', { skip }, () => {
  const memory = sharedMemory(2);
  const sumsq = resumableSumsqFor(memory);
  assert.ok(sumsq !== null);
  const STATE = 0;
  const x = new Float32Array(memory.buffer, 256, 100);
  for (const [bad, expect] of [
    [Number.NaN, Number.NaN],
    [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY],
    [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY],
  ] as const)
    for (const at of [0, 17, 63, 64, 99]) {
      x.fill(0.5);
      x[at] = bad;
      new Uint8Array(memory.buffer, STATE, 128).fill(0);
      sumsq(x.byteOffset, 32, STATE, 0);
      sumsq(x.byteOffset + 128, 32, STATE, 0);
      const got = sumsq(x.byteOffset + 256, 36, STATE, 1);
      assert.ok(Object.is(got, expect), `${bad} at ${at}: ${got}`);
    }
});
