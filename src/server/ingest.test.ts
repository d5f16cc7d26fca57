/**
 * The update ingest path with pooled bodies (bodies.ts): a block lent for one upload is reused by
 * later ones, so every accepted update must be journaled with exactly the bytes it was sent with
 * (or, stored folded, be in the stored buffer exactly once), also when many uploads are in flight
 * and blocks come back and go out again meanwhile.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BodyPool } from './bodies.ts';
import { decodeStrategyState } from './coordinator.ts';
import { type RunningServer, startServer } from './index.ts';
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

const INGEST_TASK = {
  taskId: 'ingest',
  modelInput: { inputKind: 'dense', inputDim: 999, numClasses: 10 }, // 10,000 params
  model: { kind: 'softmax' },
  // No step during the test: every accepted update stays in the journal or the buffer.
  strategy: { kind: 'fedbuff', bufferSize: 10_000, staleness: { kind: 'constant' } },
  concurrency: 10_000,
  evalEvery: 0,
};

/**
 * Three waves of 40 uploads in flight (blocks released by one upload are lent to the next), each
 * with its own delta; `check` then reads back what the server stored, by assignment id.
 */
async function ingestWaves(
  journalDeltas: boolean,
  check: (server: RunningServer, sent: Map<string, Float32Array>) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-ingest-'));
  const server = await startServer({ dataDir: dir, task: INGEST_TASK, journalDeltas });
  try {
    const { token } = await registerDevice(server.url, server.enrollmentKey);
    const sent = new Map<string, Float32Array>();
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
    await check(server, sent);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  }
}

test('ingest: concurrent uploads with distinct deltas are journaled byte for byte (pooled bodies)', async () => {
  await ingestWaves(true, async (server, sent) => {
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
  });
});

test('ingest: concurrent uploads are stored folded: the stored buffer is their sum, every key recorded', async () => {
  await ingestWaves(false, async (server, sent) => {
    assert.deepEqual(await server.storage.journalSince('ingest', 0), [], 'no delta journaled');
    const folded = await server.storage.foldedState('ingest');
    assert.ok(folded !== null);
    assert.equal(folded.journalSeq, sent.size);
    const state = decodeStrategyState(folded.state, folded.params, folded.version);
    assert.equal(state.buffer?.count, sent.size);
    // Reference: the float64 sum of what was sent (one example each, constant staleness weight 1).
    // Float32 folding in arrival order differs by rounding only (|Σ| ≤ 0.12: ≲ 1e-6); a delta read
    // from a block another upload had overwritten would be off by ~1e-3.
    const sum = new Float64Array(10_000);
    for (const delta of sent.values())
      for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] as number) + (delta[j] as number);
    let worst = 0;
    for (let j = 0; j < sum.length; j++)
      worst = Math.max(worst, Math.abs((state.buffer?.sum[j] ?? Number.NaN) - (sum[j] as number)));
    assert.ok(worst < 1e-5, `largest difference from the float64 sum ${worst}`);
    for (const key of sent.keys()) {
      const stored = await server.storage.lookupIdempotencyKey('ingest', key);
      assert.ok(stored !== null && stored.seq >= 1 && stored.seq <= sent.size, `key ${key}`);
    }
  });
});
