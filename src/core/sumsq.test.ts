import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpdateArena } from '../fl/wasm.ts';
import { Rng } from './rng.ts';
import { sumOfSquaresInMemory, sumsqSimdAvailable } from './sumsq.ts';

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
