import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { accumulate, accumulateJs, allocAccumulator } from './aggregate.ts';
import { arenaOf, simdAvailable, UpdateArena } from './wasm.ts';

const LENGTHS = [0, 1, 3, 15, 16, 17, 63, 64, 65, 127, 1001, 4099];

function randomArray(n: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * 3);
}

/** Naive float64 reference of Σ_k w_k · d_k added to the starting buffer. */
function reference(start: Float32Array, updates: [number, Float32Array][]): Float64Array {
  const out = Float64Array.from(start);
  for (const [w, d] of updates)
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) + w * (d[i] as number);
  return out;
}

function assertNear(got: Float32Array, want: Float64Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-5 * (1 + Math.abs(want[i] as number));
    assert.ok(
      Math.abs((got[i] as number) - (want[i] as number)) <= tol,
      `${what} [${i}]: ${got[i]} vs ${want[i]}`,
    );
  }
}

test('SIMD kernel is available on this Node (the fallback is tested below either way)', () => {
  assert.equal(simdAvailable(), true);
});

for (const n of LENGTHS) {
  test(`accumulate matches a float64 reference at length ${n} (arena, foreign and JS paths)`, () => {
    const rng = new Rng(n + 1);
    const arena = new UpdateArena();
    const start = randomArray(n, rng);
    const updates: [number, Float32Array][] = Array.from({ length: 5 }, (_, k) => [
      k === 2 ? -0.75 : rng.uniform(0, 20),
      randomArray(n, rng),
    ]);
    const want = reference(start, updates);

    const inArena = arena.alloc(n);
    inArena.set(start);
    for (const [k, [w, d]] of updates.entries()) {
      // Alternate deltas living in the arena and ordinary arrays (which go through staging).
      if (k % 2 === 0) {
        const a = arena.alloc(n);
        a.set(d);
        accumulate(inArena, w, a);
        arena.free(a);
      } else accumulate(inArena, w, d);
    }
    assertNear(inArena, want, 'arena');

    const plain = new Float32Array(start);
    for (const [w, d] of updates) accumulate(plain, w, d);
    assertNear(plain, want, 'plain');

    const js = new Float32Array(start);
    for (const [w, d] of updates) accumulateJs(js, w, d);
    assertNear(js, want, 'js');
  });
}

test('accumulate rejects mismatched lengths without touching the buffer', () => {
  for (const buffer of [new Float32Array(5).fill(1), allocAccumulator(5).fill(1)]) {
    assert.throws(
      () => accumulate(buffer, 1, new Float32Array(4)),
      (e: unknown) => e instanceof OrchardError && e.code === 'SHAPE_MISMATCH',
    );
    assert.deepEqual(Array.from(buffer), [1, 1, 1, 1, 1]);
  }
});

test('arena blocks are zeroed, 64-byte aligned, reused after free, and survive memory growth', () => {
  const arena = new UpdateArena(65536);
  const a = arena.alloc(10);
  a.fill(7);
  assert.equal(a.byteOffset % 64, 0);
  assert.equal(arenaOf(a), arena);
  assert.equal(arenaOf(new Float32Array(3)), undefined);
  const offset = a.byteOffset;
  arena.free(a);
  const b = arena.alloc(10);
  assert.equal(b.byteOffset, offset, 'same-size block is reused');
  assert.deepEqual(Array.from(b), new Array(10).fill(0));
  b.fill(3);
  // Force growth well past the initial 64 KiB; the old view must keep its contents.
  const big = arena.alloc(1 << 20);
  big[big.length - 1] = 5;
  assert.deepEqual(Array.from(b), new Array(10).fill(3));
  const c = arena.alloc(100);
  accumulate(c, 2, c.slice().fill(1));
  assert.equal(c[99], 2);
  assert.equal(arenaOf(big), arena);
  assert.equal(arenaOf(b), arena);
});

test('freeing a foreign array, a subarray or twice is a typed error', () => {
  const arena = new UpdateArena();
  const a = arena.alloc(32);
  const isArg = (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT';
  assert.throws(() => arena.free(new Float32Array(32)), isArg);
  assert.throws(() => arena.free(a.subarray(16)), isArg);
  arena.free(a);
  assert.throws(() => arena.free(a), isArg);
  assert.throws(() => arena.alloc(-1), isArg);
});
