import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { sumOfSquaresInMemory, sumsqSimdAvailable } from '../core/sumsq.ts';
import { defaultArena } from '../fl/wasm.ts';
import { BodyPool, type LentBody, presummedSquares } from './bodies.ts';
import { decodeFrame, encodeFrame, FRAME_KIND_UPDATE } from './protocol.ts';

/** Chunks of random sizes, each a view at a random offset into a larger buffer (as socket chunks are). */
function randomChunks(total: number, rng: Rng): Buffer[] {
  const chunks: Buffer[] = [];
  for (let done = 0; done < total; ) {
    const size = Math.min(total - done, 1 + rng.int(70_000));
    const pad = rng.int(16);
    const backing = Buffer.alloc(pad + size + rng.int(16));
    for (let i = 0; i < backing.length; i++) backing[i] = rng.int(256);
    chunks.push(backing.subarray(pad, pad + size));
    done += size;
  }
  return chunks;
}

test('write assembles a body from chunks at any alignment, byte for byte', () => {
  const pool = new BodyPool();
  const rng = new Rng(21);
  for (const total of [1, 7, 4096, 400_037, 400_064]) {
    const lent = pool.lend(total);
    assert.ok(lent !== null);
    const chunks = randomChunks(total, rng);
    let at = 0;
    for (const chunk of chunks) {
      lent.write(chunk, at);
      at += chunk.length;
    }
    assert.equal(at, total);
    assert.ok(lent.bytes.equals(Buffer.concat(chunks)), `body of ${total} bytes differs`);
    lent.release();
  }
});

test('write refuses a chunk past the end and leaves the body as it was', () => {
  const pool = new BodyPool();
  const lent = pool.lend(10);
  assert.ok(lent !== null);
  lent.write(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 0);
  const before = Buffer.from(lent.bytes);
  assert.throws(() => lent.write(Buffer.from([9, 9, 9]), 8), RangeError);
  assert.throws(() => lent.write(Buffer.from([9]), -1), RangeError);
  assert.throws(() => lent.write(Buffer.from([9]), 0.5), RangeError);
  assert.ok(lent.bytes.equals(before));
  lent.write(new Uint8Array(0), 10); // an empty chunk at the end is fine
  lent.write(new Uint8Array([42]), 9); // a plain Uint8Array too
  assert.equal(lent.bytes[9], 42);
  lent.release();
});

/** `bytes` cut into chunks of random sizes, each copied to a random offset of its own buffer. */
function cut(bytes: Uint8Array, rng: Rng, firstSizes: readonly number[] = []): Buffer[] {
  const chunks: Buffer[] = [];
  for (let done = 0, i = 0; done < bytes.length; i++) {
    const size = Math.min(bytes.length - done, firstSizes[i] ?? 1 + rng.int(70_000));
    const pad = rng.int(16);
    const backing = Buffer.alloc(pad + size);
    backing.set(bytes.subarray(done, done + size), pad);
    chunks.push(backing.subarray(pad));
    done += size;
  }
  return chunks;
}

/** Independent reference: one float64 running sum over the values widened to float64. */
function referenceSquares(x: Float32Array): number {
  let s = 0;
  for (const v of Float64Array.from(x)) s += v * v;
  return s;
}

function lendFrame(pool: BodyPool, frame: Uint8Array, chunks: readonly Buffer[]): LentBody {
  const lent = pool.lend(frame.length);
  assert.ok(lent !== null);
  let at = 0;
  for (const chunk of chunks) {
    lent.write(chunk, at);
    at += chunk.length;
  }
  return lent;
}

const simd = sumsqSimdAvailable() ? false : 'no Wasm SIMD in this runtime';

test('norms summed chunk by chunk equal one pass over the whole body, bit for bit', { skip: simd }, () => {
  const pool = new BodyPool();
  const rng = new Rng(31);
  const arena = defaultArena();
  for (const n of [1, 15, 16, 17, 1000, 100_000, 100_003]) {
    for (const header of [{ a: 1 }, { assignmentId: 'x'.repeat(150 + rng.int(9)) }]) {
      const floats = new Float32Array(n);
      for (let i = 0; i < n; i++) floats[i] = rng.normal() * 10 ** (rng.int(8) - 4);
      const frame = encodeFrame(FRAME_KIND_UPDATE, header, floats);
      // The first chunks may end before the header length (byte 8–11) has arrived.
      for (const firstSizes of [[], [5], [11, 1], [12], [3, 70]]) {
        const lent = lendFrame(pool, frame, cut(frame, rng, firstSizes));
        const delta = decodeFrame(lent.bytes, FRAME_KIND_UPDATE, { copy: false }).floats;
        const got = presummedSquares(lent.bytes, delta);
        const whole = sumOfSquaresInMemory(arena.memory, delta);
        assert.ok(got !== null && Object.is(got, whole), `n=${n} ${firstSizes}: ${got} vs ${whole}`);
        const expected = referenceSquares(floats);
        assert.ok(Math.abs(got - expected) <= 2 * (n + 1) * Number.EPSILON * expected);
        lent.release();
      }
    }
  }
});

test('a NaN or Infinity in any chunk makes the presummed norm non-finite', { skip: simd }, () => {
  const pool = new BodyPool();
  const rng = new Rng(32);
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])
    for (const at of [0, 5_000, 99_999]) {
      const floats = new Float32Array(100_000).fill(0.25);
      floats[at] = bad;
      const frame = encodeFrame(FRAME_KIND_UPDATE, { k: 'v' }, floats);
      const lent = lendFrame(pool, frame, cut(frame, rng));
      const delta = decodeFrame(lent.bytes, FRAME_KIND_UPDATE, { copy: false }).floats;
      const got = presummedSquares(lent.bytes, delta);
      assert.ok(Object.is(got, Number.isNaN(bad) ? Number.NaN : Number.POSITIVE_INFINITY), `${bad} at ${at}`);
      lent.release();
    }
});

test('no presummed norm for other views, bodies out of order, partial or returned', { skip: simd }, () => {
  const pool = new BodyPool();
  const rng = new Rng(33);
  const floats = new Float32Array(5_000).map(() => rng.normal());
  const frame = encodeFrame(FRAME_KIND_UPDATE, { k: 1 }, floats);
  const half = Math.floor(frame.length / 2);

  const whole = lendFrame(pool, frame, cut(frame, rng));
  const delta = decodeFrame(whole.bytes, FRAME_KIND_UPDATE, { copy: false }).floats;
  assert.equal(presummedSquares(whole.bytes, delta.subarray(1)), null);
  assert.equal(presummedSquares(whole.bytes, delta.subarray(0, delta.length - 1)), null);
  assert.equal(presummedSquares(Buffer.from(whole.bytes), delta), null);
  assert.ok(presummedSquares(whole.bytes, delta) !== null);
  whole.release();
  assert.equal(presummedSquares(whole.bytes, delta), null);

  // Second half first: the body is right once both arrived, but no longer summed in order.
  const swapped = pool.lend(frame.length);
  assert.ok(swapped !== null);
  swapped.write(Buffer.from(frame.subarray(half)), half);
  swapped.write(Buffer.from(frame.subarray(0, half)), 0);
  assert.ok(swapped.bytes.equals(frame));
  const swappedDelta = decodeFrame(swapped.bytes, FRAME_KIND_UPDATE, { copy: false }).floats;
  assert.equal(presummedSquares(swapped.bytes, swappedDelta), null);
  swapped.release();

  const partial = lendFrame(pool, frame, [Buffer.from(frame.subarray(0, half))]);
  const view = new Float32Array(
    partial.bytes.buffer,
    delta.byteOffset - whole.bytes.byteOffset + partial.bytes.byteOffset,
    delta.length,
  );
  assert.equal(presummedSquares(partial.bytes, view), null);
  partial.release();

  // A header length that runs past the body: never summed (decodeFrame refuses such a frame too).
  const bogus = Buffer.from(frame);
  bogus.writeUInt32LE(frame.length, 8);
  const refused = lendFrame(pool, bogus, [bogus]);
  assert.throws(() => decodeFrame(refused.bytes, FRAME_KIND_UPDATE, { copy: false }));
  refused.release();
});
