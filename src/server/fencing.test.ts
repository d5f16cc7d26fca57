/**
 * Fencing: a coordinator that lost its lease without noticing (paused past the TTL) cannot write
 * anything once the next holder fenced the storage; it answers 503 and stops acting.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskCoordinator } from './coordinator.ts';
import type { ApiError } from './errors.ts';
import { LocalFencedLease } from './scaleout/lease.ts';
import { SqliteStorage } from './storage/sqlite.ts';
import { parseTaskSpec, taskRuntime } from './task.ts';

const SPEC = parseTaskSpec({
  taskId: 'fence',
  modelInput: { inputKind: 'dense', inputDim: 2, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' } },
  checkpointEvery: 1,
  evalEvery: 0,
});
const delta = (v: number) => new Float32Array(6).fill(v);
const input = (i: number, baseVersion: number) => ({
  idempotencyKey: `k${i}`,
  deviceId: 'd',
  assignmentId: `a${i}`,
  baseVersion,
  numExamples: 1,
  delta: delta(i / 8),
});

test('a coordinator paused past its lease TTL is fenced: its writes are refused (503) and nothing it does lands', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-fence-'));
  const path = join(dir, 'db.sqlite');
  // Two connections to one file, as two coordinator processes would have.
  const storageA = new SqliteStorage({ path });
  const storageB = new SqliteStorage({ path });
  await storageA.init();
  await storageB.init();
  let now = 1_000_000;
  const lease = new LocalFencedLease(() => now);
  const runtime = taskRuntime(SPEC);
  // A 60 s TTL: A's renewal timer (every 20 s) never fires during the test, as if A were paused.
  const a = new TaskCoordinator(runtime, { storage: storageA, lease, holderId: 'A', leaseTtlMs: 60_000 });
  const b = new TaskCoordinator(runtime, { storage: storageB, lease, holderId: 'B', leaseTtlMs: 60_000 });
  t.after(async () => {
    await a.close();
    await b.close();
    await storageA.close();
    await storageB.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await a.start();
  const x0 = Array.from(a.params() ?? []);
  await a.submit(input(1, 0));
  await a.submit(input(2, 0));
  assert.equal(a.version, 1);

  now += 61_000; // A's lease lapsed while it was paused; B takes the task over (token 2) and fences.
  await b.start();
  assert.equal(b.version, 1, 'B recovered what A journaled while it held the lease');
  const journalBefore = (await storageB.journalSince('fence', 0)).length;

  // A wakes up believing it still leads: its append carries token 1 and is refused.
  await assert.rejects(a.submit(input(3, 1)), (e: ApiError) => e.code === 'unavailable');
  assert.equal(a.ready, false, 'the deposed coordinator stopped acting');
  await assert.rejects(a.submit(input(4, 1)), (e: ApiError) => e.code === 'unavailable');
  assert.equal((await storageB.journalSince('fence', 0)).length, journalBefore, 'nothing A did landed');
  assert.equal(await lease.tryAcquire('orchard:coordinator:fence', 'A', 60_000), false);

  // B applies k3 and k4 as new (A's k3 never landed) and steps from the model A left.
  const r3 = await b.submit(input(3, 1));
  const r4 = await b.submit(input(4, 1));
  assert.ok(!('kind' in r3) && !r3.duplicate);
  assert.ok(!('kind' in r4) && !r4.duplicate);
  assert.equal(b.version, 2);
  assert.equal((await storageB.latestCheckpoint('fence'))?.version, 2);
  // FedBuff K=2, constant weights, SGD lr 1: x₂ = x₀ − (1+2)/8/2 − (3+4)/8/2 (hand-computed).
  const x2 = b.params() ?? new Float32Array(0);
  for (let i = 0; i < x2.length; i++)
    assert.ok(Math.abs((x2[i] as number) - ((x0[i] as number) - 3 / 16 - 7 / 16)) < 1e-6);
});
