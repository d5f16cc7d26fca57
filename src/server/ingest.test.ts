/**
 * The update ingest path with pooled bodies (bodies.ts): a block lent for one upload is reused by
 * later ones, so every accepted update must be journaled with exactly the bytes it was sent with,
 * also when many uploads are in flight and blocks come back and go out again meanwhile.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BodyPool } from './bodies.ts';
import { startServer } from './index.ts';
import { checkinDevice, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

test('body pool: blocks are shared memory of the exact length, reused after release, capped', () => {
  const pool = new BodyPool(256 << 10); // two 128 KiB blocks
  const a = pool.lend(100_000);
  assert.ok(a !== null);
  assert.equal(a.bytes.length, 100_000);
  assert.ok(a.bytes.buffer instanceof SharedArrayBuffer);
  assert.equal(a.bytes.byteOffset % 64, 0);
  const b = pool.lend(100_001);
  assert.ok(b !== null);
  assert.equal(pool.lend(10), null, 'a third block would pass the cap');
  assert.equal(pool.outstanding, 2);
  a.bytes.fill(1);
  b.bytes.fill(2);
  a.release();
  a.release(); // a second release does nothing
  assert.equal(pool.outstanding, 1);
  // Same size class (64 KiB steps): the returned block comes back, not fresh memory.
  const c = pool.lend(99_000);
  assert.ok(c !== null);
  assert.equal(c.bytes.buffer, a.bytes.buffer);
  assert.equal(c.bytes.byteOffset, a.bytes.byteOffset);
  assert.equal(c.bytes[0], 1);
  assert.equal(pool.lend(0), null);
  b.release();
  c.release();
  assert.equal(pool.outstanding, 0);
});

test('ingest: concurrent uploads with distinct deltas are journaled byte for byte (pooled bodies)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-ingest-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const server = await startServer({
    dataDir: dir,
    task: {
      taskId: 'ingest',
      modelInput: { inputKind: 'dense', inputDim: 999, numClasses: 10 }, // 10,000 params
      model: { kind: 'softmax' },
      // No step during the test: every accepted update stays in the journal.
      strategy: { kind: 'fedbuff', bufferSize: 10_000, staleness: { kind: 'constant' } },
      concurrency: 10_000,
      evalEvery: 0,
    },
  });
  try {
    const { token } = await registerDevice(server.url, server.enrollmentKey);
    const sent = new Map<string, Float32Array>();
    // Three waves of 40 in flight: blocks released by one upload are lent to the next.
    for (let wave = 0; wave < 3; wave++) {
      const assignments: Train[] = [];
      for (let i = 0; i < 40; i++) assignments.push((await checkinDevice(server.url, token)) as Train);
      await Promise.all(
        assignments.map(async (a, i) => {
          const k = wave * 40 + i;
          const delta = Float32Array.from({ length: 10_000 }, (_, j) => Math.sin(j * 0.01 + k) * 1e-3);
          sent.set(a.assignmentId, delta);
          const r = await uploadUpdate(server.url, token, a, delta);
          assert.equal(r.accepted, true);
          assert.equal(r.duplicate, false);
        }),
      );
    }
    const journal = await server.storage.journalSince('ingest', 0);
    assert.equal(journal.length, sent.size);
    for (const entry of journal) {
      const expected = sent.get(entry.idempotencyKey);
      assert.ok(expected !== undefined, `unexpected key ${entry.idempotencyKey}`);
      assert.deepEqual(
        Buffer.from(entry.delta.buffer, entry.delta.byteOffset, entry.delta.byteLength),
        Buffer.from(expected.buffer),
        `payload of ${entry.idempotencyKey}`,
      );
    }
  } finally {
    await server.close();
  }
});
