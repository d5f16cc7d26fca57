/**
 * Idempotency keys are forgotten some time after their assignment lapsed (the key table would
 * otherwise grow by a row per update for good), and at-most-once still holds: an upload under a
 * forgotten key is refused by its signed deadline and changes nothing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from './index.ts';
import { checkinDevice, postUpdate, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

const TASK = {
  taskId: 'keys',
  modelInput: { inputKind: 'dense', inputDim: 3, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 1, staleness: { kind: 'constant' } },
  concurrency: 100,
  evalEvery: 0,
  assignmentTtlMs: 400,
  keyRetentionMs: 0,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function train(url: string, token: string): Promise<Train> {
  const a = await checkinDevice(url, token);
  assert.equal(a.action, 'train', JSON.stringify(a));
  return a as Train;
}

test('keys of lapsed assignments are pruned after their retention; a late replay is refused and applies nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-keys-'));
  let server = await startServer({ dataDir: dir, task: TASK });
  // One hook, in this order: removing the folder while the server still writes to it can fail.
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const device = await registerDevice(server.url, server.enrollmentKey);
  const delta = new Float32Array(8).fill(0.01);

  const first = await train(server.url, device.token);
  const answer = await uploadUpdate(server.url, device.token, first, delta);
  assert.equal(answer.duplicate, false);
  // While the assignment is open a replay gets the stored answer.
  assert.equal((await uploadUpdate(server.url, device.token, first, delta)).duplicate, true);
  assert.notEqual(await server.storage.lookupIdempotencyKey('keys', first.assignmentId), null);

  // After it lapsed (retention 0), the next checkpoint (a new version) prunes it, at most once a second.
  await sleep(1200);
  const second = await train(server.url, device.token);
  await uploadUpdate(server.url, device.token, second, delta);
  const deadline = Date.now() + 10_000;
  while ((await server.storage.lookupIdempotencyKey('keys', first.assignmentId)) !== null) {
    assert.ok(Date.now() < deadline, 'the lapsed key was never pruned');
    await sleep(50);
  }
  // The open assignment's key stays.
  assert.notEqual(await server.storage.lookupIdempotencyKey('keys', second.assignmentId), null);

  // A restart drops the aggregator's in-memory replay answers (kept until a lapsed assignment's
  // 10 s bucket goes), so the late replay meets storage alone, as one a day later would.
  await server.close();
  server = await startServer({ dataDir: dir, task: TASK });
  const version = server.coordinator?.version;
  assert.equal(version, 2);
  const journal = (await server.storage.journalSince('keys', 0)).map((e) => e.seq);
  const late = await postUpdate(server.url, device.token, first, delta);
  assert.equal(late.status, 409, late.text);
  assert.equal((JSON.parse(late.text) as { error: { code: string } }).error.code, 'not_assigned');
  assert.equal(server.coordinator?.version, version);
  assert.deepEqual(
    (await server.storage.journalSince('keys', 0)).map((e) => e.seq),
    journal,
  );
  assert.equal(await server.storage.lookupIdempotencyKey('keys', first.assignmentId), null);
});

test('keyRetentionMs must be a non-negative integer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-keys-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(
    startServer({ dataDir: dir, task: { ...TASK, keyRetentionMs: -1 } }),
    (e: unknown) => e instanceof Error && /keyRetentionMs/.test(e.message),
  );
});
