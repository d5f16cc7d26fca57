import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { BodyPool } from './bodies.ts';

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
