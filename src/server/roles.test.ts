/** Unit tests of the server roles and their pieces, each against hand-derived expectations. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalAdmissionCounter } from './admission.ts';
import { AssignmentSigner } from './assignment.ts';
import { bearerOf, DeviceAuth, sha256Hex } from './auth.ts';
import { decodeStrategyState, encodeStrategyState, TaskCoordinator } from './coordinator.ts';
import type { ApiError } from './errors.ts';
import { LocalLease } from './lease.ts';
import { isEligible, parseCheckinRequest, Selector } from './selector.ts';
import { SqliteStorage } from './storage/sqlite.ts';
import type { AppendResult, FoldedCommit, FoldedCommitResult, JournalEntryInput } from './storage/types.ts';
import { defaultTask, parseTaskSpec, taskRuntime } from './task.ts';

const KEY = new Uint8Array(32).fill(7);

function spec(extra: Record<string, unknown> = {}) {
  return parseTaskSpec({
    taskId: 't',
    modelInput: { inputKind: 'dense', inputDim: 2, numClasses: 2 },
    model: { kind: 'softmax' },
    strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' } },
    evalEvery: 0,
    ...extra,
  });
}

test('local lease: one holder at a time; expiry hands it over; release frees it', async () => {
  let now = 1000;
  const lease = new LocalLease(() => now);
  assert.equal(await lease.tryAcquire('k', 'a', 100), true);
  assert.equal(await lease.tryAcquire('k', 'b', 100), false);
  assert.equal(await lease.tryAcquire('k', 'a', 100), true); // renewal
  now += 101;
  assert.equal(await lease.tryAcquire('k', 'b', 100), true);
  assert.equal(await lease.tryAcquire('k', 'a', 100), false);
  await lease.release('k', 'a'); // not the holder: no effect
  assert.equal(await lease.tryAcquire('k', 'a', 100), false);
  await lease.release('k', 'b');
  assert.equal(await lease.tryAcquire('k', 'a', 100), true);
});

test('admission counter: concurrency limit, release, expiry, per-device interval', async () => {
  let now = 0;
  const c = new LocalAdmissionCounter(() => now);
  assert.equal(await c.tryAcquire('t', 's1', 2, 1000), true);
  assert.equal(await c.tryAcquire('t', 's2', 2, 500), true);
  assert.equal(await c.tryAcquire('t', 's3', 2, 1000), false);
  assert.equal(await c.tryAcquire('u', 's3', 2, 1000), true); // other task, own budget
  await c.release('t', 's1');
  assert.equal(await c.inFlight('t'), 1);
  now = 600; // s2 lapsed at 500
  assert.equal(await c.inFlight('t'), 0);
  assert.equal(await c.touch('d', 300, 1000), 0);
  assert.equal(await c.touch('d', 300, 1100), 200);
  assert.equal(await c.touch('d', 300, 1300), 0);
});

test('assignment ids: verify round-trips, and any tampering or another key is refused', () => {
  const signer = new AssignmentSigner(KEY);
  const claims = { taskId: 't', deviceId: 'd', version: 4, deadline: 123 };
  const id = signer.sign(claims);
  assert.deepEqual(signer.verify(id), claims);
  assert.notEqual(signer.sign(claims), id, 'a nonce makes every id unique');
  const [payload, mac] = id.split('.') as [string, string];
  const forgedPayload = Buffer.from(JSON.stringify(['t', 'd', 5, 123, 'x'])).toString('base64url');
  assert.equal(signer.verify(`${forgedPayload}.${mac}`), null);
  assert.equal(signer.verify(`${payload}.${mac.slice(0, -2)}AA`), null);
  assert.equal(signer.verify(payload), null);
  assert.equal(new AssignmentSigner(new Uint8Array(32).fill(8)).verify(id), null);
});

test('assignment ids: the first upload is checked by lookup, later ones by MAC, with the same claims; lapsed ids and ids past the cap are not remembered', () => {
  let now = 1_000;
  const signer = new AssignmentSigner(KEY, { now: () => now, maxRemembered: 3 });
  const claims = { taskId: 't', deviceId: 'd', version: 4, deadline: 5_000, round: 2 };
  const id = signer.sign(claims);
  assert.equal(signer.rememberedIds, 1);
  assert.deepEqual(signer.verify(id), claims);
  assert.equal(signer.rememberedIds, 0);
  // A retry under the same id: checked by its MAC, same claims.
  assert.deepEqual(signer.verify(id), claims);
  // Another signer (another key) never accepts it, whatever this one remembers.
  const again = signer.sign(claims);
  assert.equal(new AssignmentSigner(new Uint8Array(32).fill(8)).verify(again), null);
  // A remembered id spelled differently is not found, and fails its MAC check.
  assert.equal(signer.verify(`${again} `), null);
  assert.equal(signer.verify(`${again.slice(0, -1)}${again.endsWith('A') ? 'B' : 'A'}`), null);
  // Lapsed ids are dropped at the next sign (then checked by MAC); past the cap nothing more is
  // remembered.
  const fresh = new AssignmentSigner(KEY, { now: () => now, maxRemembered: 3 });
  const soon = fresh.sign({ ...claims, deadline: 1_500 });
  fresh.sign(claims);
  assert.equal(fresh.rememberedIds, 2);
  now = 2_000;
  fresh.sign(claims);
  assert.equal(fresh.rememberedIds, 2);
  assert.deepEqual(fresh.verify(soon), { ...claims, deadline: 1_500 });
  assert.equal(fresh.rememberedIds, 2);
  for (let i = 0; i < 3; i++) fresh.sign(claims);
  assert.equal(fresh.rememberedIds, 3);
});

test('device auth: register with the key, hash-only storage, revocation, admin checks', async () => {
  const storage = new SqliteStorage({ path: ':memory:' });
  await storage.init();
  const auth = new DeviceAuth(storage, 'enroll', 'admin');
  await assert.rejects(auth.register('nope'), (e: ApiError) => e.code === 'unauthenticated');
  const { deviceId, token } = await auth.register('enroll');
  const stored = await storage.deviceByTokenHash(sha256Hex(token));
  assert.equal(stored?.deviceId, deviceId);
  assert.equal(bearerOf(`Bearer ${token}`), token);
  assert.equal(await auth.authenticate(`Bearer ${token}`), deviceId);
  await assert.rejects(auth.authenticate(undefined), (e: ApiError) => e.code === 'unauthenticated');
  await assert.rejects(auth.authenticate(`Bearer ${token}x`), (e: ApiError) => e.code === 'unauthenticated');
  await assert.rejects(auth.revoke('Bearer admin2', deviceId), (e: ApiError) => e.code === 'forbidden');
  await auth.revoke('Bearer admin', deviceId);
  await assert.rejects(auth.authenticate(`Bearer ${token}`), (e: ApiError) => e.code === 'revoked');
  await storage.close();
});

test('selector: eligibility, target concurrency → wait with pacing, rate limit → 429', async () => {
  let now = 10_000;
  const admission = new LocalAdmissionCounter(() => now);
  const s = spec({ concurrency: 2, eligibility: { charging: true }, minCheckinIntervalMs: 50, waitMs: 700 });
  let version: number | null = 3;
  const signer = new AssignmentSigner(KEY, { now: () => now });
  const selector = new Selector({
    tasks: () => [{ spec: s, currentVersion: () => version, planExtras: {} }],
    admission,
    signer,
    now: () => now,
  });
  assert.deepEqual(isEligible(s, { charging: true, os: 'x' }), true);
  assert.equal((await selector.checkin('a', { attributes: { charging: false } })).action, 'wait');
  const first = await selector.checkin('a', { attributes: { charging: true } });
  assert.equal(first.action, 'train');
  if (first.action === 'train') {
    assert.equal(first.version, 3);
    assert.equal(first.modelUrl, '/v1/tasks/t/models/3');
    assert.equal(first.deadline, now + s.assignmentTtlMs);
  }
  await assert.rejects(
    selector.checkin('a', { attributes: { charging: true } }),
    (e: ApiError) => e.code === 'rate_limited' && e.retryAfterMs === 50,
  );
  assert.equal((await selector.checkin('b', { attributes: { charging: true } })).action, 'train');
  const full = await selector.checkin('c', { attributes: { charging: true } });
  assert.deepEqual(full, {
    action: 'wait',
    retryAfterMs: 700,
    reason: 'all eligible tasks are at their target concurrency',
  });
  // The id signed for the refused check-in is not kept for a lookup: only the two handed out are.
  assert.equal(signer.rememberedIds, 2);
  now += 100;
  version = null;
  const recovering = await selector.checkin('d', { attributes: { charging: true } });
  assert.equal(recovering.action, 'wait');
  assert.throws(
    () => parseCheckinRequest({ attributes: { x: [1] } }),
    (e: ApiError) => e.code === 'bad_request',
  );
});

test('strategy state survives the checkpoint encoding bit for bit', () => {
  const snapshot = {
    version: 7,
    params: new Float32Array([1, 2, 3]),
    buffer: { sum: new Float32Array([0.5, -0.25, 1e-30]), count: 2, examples: 9 },
    optimizer: { steps: 4, slots: [new Float32Array([1, 1, 1]), new Float32Array([2, 2, Number.MIN_VALUE])] },
  };
  const back = decodeStrategyState(encodeStrategyState(snapshot), snapshot.params, 7);
  assert.deepEqual(
    {
      ...back,
      params: Array.from(back.params),
      buffer: { ...back.buffer, sum: Array.from(back.buffer?.sum ?? []) },
      optimizer: { steps: back.optimizer?.steps, slots: back.optimizer?.slots.map((s) => Array.from(s)) },
    },
    {
      ...snapshot,
      params: [1, 2, 3],
      buffer: { ...snapshot.buffer, sum: Array.from(snapshot.buffer.sum) },
      optimizer: { steps: 4, slots: snapshot.optimizer.slots.map((s) => Array.from(s)) },
    },
  );
});

test('coordinator: restart = checkpoint + journal replay, equal to the uninterrupted model', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-coord-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Momentum makes the optimizer state matter; checkpoints every 2 versions leave journal tails.
  const s = spec({
    strategy: {
      kind: 'fedbuff',
      bufferSize: 3,
      staleness: { kind: 'constant' },
      serverOptimizer: { kind: 'momentum', lr: 0.5 },
    },
    checkpointEvery: 2,
  });
  const delta = (i: number) => new Float32Array(6).map((_, j) => ((i + 2 * j) % 5) / 16 - 0.125);
  const open = async () => {
    const storage = new SqliteStorage({ path: join(dir, 'db.sqlite') });
    await storage.init();
    const c = new TaskCoordinator(taskRuntime(s), { storage, lease: new LocalLease(), holderId: 'h' });
    await c.start();
    return { storage, c };
  };
  const submit = async (c: TaskCoordinator, i: number) => {
    const r = await c.submit({
      idempotencyKey: `k${i}`,
      deviceId: 'd',
      assignmentId: `a${i}`,
      baseVersion: c.version,
      numExamples: 1 + (i % 2),
      delta: delta(i),
    });
    assert.ok(!('kind' in r), JSON.stringify(r));
  };
  let { storage, c } = await open();
  for (let i = 0; i < 11; i++) await submit(c, i); // 3 versions + 2 buffered
  await c.close();
  await storage.close();
  ({ storage, c } = await open());
  assert.equal(c.version, 3);
  for (let i = 11; i < 16; i++) await submit(c, i); // 16 updates → 5 versions + 1 buffered
  const resumed = Array.from(c.params() ?? []);
  assert.equal(c.version, 5);
  await c.close();
  await storage.close();

  // Reference: the same 16 updates through one strategy that never stopped.
  const straight = taskRuntime(s).newStrategy();
  for (let i = 0; i < 16; i++) {
    straight.resumeAssignment(i, straight.version);
    straight.onUpdate(
      { clientId: i, baseVersion: straight.version, delta: delta(i), numExamples: 1 + (i % 2) },
      0,
    );
  }
  assert.deepEqual(resumed, Array.from(straight.params));
});

test('a second coordinator cannot act while the first holds the lease', async () => {
  const storage = new SqliteStorage({ path: ':memory:' });
  await storage.init();
  const lease = new LocalLease();
  const runtime = taskRuntime(spec());
  const first = new TaskCoordinator(runtime, { storage, lease, holderId: 'one' });
  await first.start();
  const second = new TaskCoordinator(runtime, { storage, lease, holderId: 'two' });
  await assert.rejects(second.start(), (e: ApiError) => e.code === 'unavailable');
  await first.close();
  await second.start(); // released on close
  await second.close();
  await storage.close();
});

test('the default task is the foundation preset: MNIST FedBuff K=10, concurrency 100, softmax', () => {
  const d = defaultTask();
  assert.equal(d.strategy.kind, 'fedbuff');
  if (d.strategy.kind === 'fedbuff') assert.equal(d.strategy.bufferSize, 10);
  assert.equal(d.concurrency, 100);
  assert.equal(d.dataset?.kind, 'mnist');
  assert.equal(d.model.kind, 'softmax');
  // Sync rounds are served, but only with a round deadline.
  assert.throws(() => parseTaskSpec({ ...d, strategy: { kind: 'sync' } }), /finite roundTimeout/);
  assert.equal(parseTaskSpec({ ...d, strategy: { kind: 'sync', roundTimeout: 60 } }).strategy.kind, 'sync');
});

/** Update number `i` as the aggregator hands it to a coordinator (key k<i>, assignment a<i>). */
function foldInput(i: number, delta: Float32Array, baseVersion = 0) {
  return {
    idempotencyKey: `k${i}`,
    deviceId: 'd',
    assignmentId: `a${i}`,
    baseVersion,
    numExamples: 1,
    delta,
  };
}

test('appends are issued without waiting for each other, in fold order; replay equals the live model', async () => {
  const inner = new SqliteStorage({ path: ':memory:' });
  await inner.init();
  let inFlight = 0;
  let maxInFlight = 0;
  const storage = Object.assign(Object.create(inner) as SqliteStorage, {
    async appendAccepted(entry: JournalEntryInput): Promise<AppendResult> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        return await inner.appendAccepted(entry);
      } finally {
        inFlight--;
      }
    },
  });
  const s = spec({
    strategy: { kind: 'fedbuff', bufferSize: 4, staleness: { kind: 'polynomial', exponent: 1 } },
  });
  const c = new TaskCoordinator(taskRuntime(s), {
    storage,
    lease: new LocalLease(),
    holderId: 'h',
    journalDeltas: true,
  });
  await c.start();
  const delta = (i: number) => new Float32Array(6).map((_, j) => ((i * 3 + j) % 7) / 32);
  // Ten concurrent submissions, base version 0: staleness (and so weights) depend on fold order.
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => c.submit(foldInput(i, delta(i)))));
  assert.ok(results.every((r) => !('kind' in r)));
  // All ten were handed to the storage before the first completed: it can commit them together.
  assert.equal(maxInFlight, 10);
  const live = Array.from(c.params() ?? []);
  assert.equal(c.version, 2);
  await c.close(); // waits for the checkpoint writes
  const journal = await inner.journalSince('t', 0);
  // Checkpoint at version 2 covers seqs 1–8; the two buffered updates remain, in submission order.
  assert.deepEqual(
    journal.map((e) => e.idempotencyKey),
    ['k8', 'k9'],
  );
  const again = new TaskCoordinator(taskRuntime(s), {
    storage: inner,
    lease: new LocalLease(),
    holderId: 'h2',
  });
  await again.start();
  assert.deepEqual(Array.from(again.params() ?? []), live);
  await again.close();
  await inner.close();
});

test('folded commits: updates folded during a commit go in the next, keys in fold order; recovery equals the live state', async () => {
  const inner = new SqliteStorage({ path: ':memory:' });
  await inner.init();
  const groups: string[][] = [];
  const storage = Object.assign(Object.create(inner) as SqliteStorage, {
    commitFolded(commit: FoldedCommit): Promise<FoldedCommitResult> {
      groups.push(commit.entries.map((e) => e.idempotencyKey));
      return inner.commitFolded(commit);
    },
    appendAccepted(): Promise<AppendResult> {
      throw new Error('a standalone FedBuff coordinator journals no deltas');
    },
  });
  const s = spec({
    strategy: { kind: 'fedbuff', bufferSize: 4, staleness: { kind: 'polynomial', exponent: 1 } },
  });
  const c = new TaskCoordinator(taskRuntime(s), { storage, lease: new LocalLease(), holderId: 'h' });
  await c.start();
  const delta = (i: number) => new Float32Array(6).map((_, j) => ((i * 3 + j) % 7) / 32);
  const update = (i: number, baseVersion: number) => foldInput(i, delta(i), baseVersion);
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => c.submit(update(i, 0))));
  assert.ok(results.every((r) => !('kind' in r)));
  // The first submission starts a commit at once; the nine folded while it is written share one.
  assert.deepEqual(groups, [['k0'], ['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9']]);
  for (let i = 0; i < 10; i++) assert.equal((await inner.lookupIdempotencyKey('t', `k${i}`))?.seq, i + 1);
  assert.equal(c.version, 2);
  const liveParams = Array.from(c.params() ?? []);
  await c.close();
  assert.deepEqual(await inner.journalSince('t', 0), []);
  const again = new TaskCoordinator(taskRuntime(s), {
    storage: inner,
    lease: new LocalLease(),
    holderId: 'h2',
  });
  await again.start();
  assert.equal(again.version, 2);
  assert.deepEqual(Array.from(again.params() ?? []), liveParams);
  // The buffer (k8, k9) came back too: two more updates step to the model a coordinator that
  // journals deltas and never restarted reaches with the same twelve updates in the same order.
  for (const i of [10, 11]) await again.submit(update(i, 2));
  const referenceStorage = new SqliteStorage({ path: ':memory:' });
  await referenceStorage.init();
  const reference = new TaskCoordinator(taskRuntime(s), {
    storage: referenceStorage,
    lease: new LocalLease(),
    holderId: 'r',
    journalDeltas: true,
  });
  await reference.start();
  await Promise.all(Array.from({ length: 10 }, (_, i) => reference.submit(update(i, 0))));
  for (const i of [10, 11]) await reference.submit(update(i, 2));
  assert.equal(again.version, 3);
  assert.equal(reference.version, 3);
  assert.deepEqual(Array.from(again.params() ?? []), Array.from(reference.params() ?? []));
  await reference.close();
  await referenceStorage.close();
  await again.close();
  await inner.close();
});

test('releaseDelta: with folded commits the delta is given back right after the fold, before the commit settles; a journaling coordinator keeps it', async () => {
  const s = spec({
    strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'polynomial', exponent: 1 } },
  });
  const delta = (i: number) => new Float32Array(6).map((_, j) => ((i * 5 + j) % 7) / 16);
  const run = async (journalDeltas: boolean) => {
    const inner = new SqliteStorage({ path: ':memory:' });
    await inner.init();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    // Commits and appends wait at the gate, so submit cannot settle before the test opens it.
    const storage = Object.assign(Object.create(inner) as SqliteStorage, {
      async commitFolded(commit: FoldedCommit): Promise<FoldedCommitResult> {
        const stored = inner.commitFolded(commit);
        await gate;
        return await stored;
      },
      async appendAccepted(entry: JournalEntryInput): Promise<AppendResult> {
        const stored = inner.appendAccepted(entry);
        await gate;
        return await stored;
      },
    });
    const c = new TaskCoordinator(taskRuntime(s), {
      storage,
      lease: new LocalLease(),
      holderId: 'h',
      journalDeltas,
    });
    await c.start();
    const released: number[] = [];
    const deltas = [delta(0), delta(1)];
    const pending = deltas.map((d, i) =>
      c.submit({
        ...foldInput(i, d),
        releaseDelta: () => {
          released.push(i);
          // The pooled block takes the next body: whatever the coordinator still read would be garbage.
          d.fill(Number.NaN);
        },
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const releasedBeforeSettle = [...released];
    open();
    const results = await Promise.all(pending);
    const params = Array.from(c.params() ?? []);
    await c.close();
    await inner.close();
    return { releasedBeforeSettle, results, params, version: c.version };
  };
  const folded = await run(false);
  assert.deepEqual(folded.releasedBeforeSettle, [0, 1]);
  assert.ok(folded.results.every((r) => !('kind' in r)));
  assert.equal(folded.version, 1);
  // The step used the deltas as sent (taken before the release): the same model as a coordinator
  // that never released them early.
  const journaled = await run(true);
  assert.deepEqual(journaled.releasedBeforeSettle, []);
  assert.equal(journaled.version, 1);
  assert.ok(folded.params.every(Number.isFinite));
  assert.deepEqual(folded.params, journaled.params);
});

test('distributed mode: the coordinator folds what aggregators journaled, skips (the same way on replay) what turned too stale', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-tail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // No checkpoint after version 0, so the restart replays every entry, the stale one included.
  const s = spec({
    strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' }, maxStaleness: 0 },
    checkpointEvery: 5,
  });
  const storage = new SqliteStorage({ path: join(dir, 'db.sqlite') });
  await storage.init();
  const open = async (holderId: string) => {
    const c = new TaskCoordinator(taskRuntime(s), {
      storage,
      lease: new LocalLease(),
      holderId,
      tail: true,
      tailIntervalMs: 5,
    });
    await c.start();
    return c;
  };
  const c = await open('one');
  const journal = (key: string, baseVersion: number, value: number) =>
    storage.appendAccepted({
      taskId: 't',
      idempotencyKey: key,
      deviceId: 'd',
      assignmentId: key,
      baseVersion,
      numExamples: 1,
      delta: new Float32Array(6).fill(value),
      response: { accepted: true },
      acceptedAt: 0,
    });
  // Two from version 0 make version 1; a third from version 0 is then staler than maxStaleness 0.
  await journal('a', 0, 0.5);
  await journal('b', 0, 0.25);
  await journal('late', 0, 8);
  await journal('c', 1, 0.125);
  await journal('d', 1, 0.125);
  const deadline = Date.now() + 5000;
  while (c.version < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(c.version, 2);
  assert.equal(c.counts.accepted, 4);
  assert.deepEqual(c.counts.rejected, { stale: 1 });
  const x0 = taskRuntime(s).initialParams;
  const live = Array.from(c.params() ?? []);
  // SGD lr 1, K = 2, constant weights: x₂ = x₀ − (0.5 + 0.25)/2 − (0.125 + 0.125)/2.
  live.forEach((v, i) => {
    assert.ok(Math.abs(v - ((x0[i] as number) - 0.5)) < 1e-6);
  });
  await c.close();
  const again = await open('two');
  assert.equal(again.version, 2);
  assert.deepEqual(again.counts.rejected, { stale: 1 });
  // Refused at fold time, found again by each replay: counted once, never added to the stored
  // counts (which hold refusals of uploads as they arrive).
  assert.deepEqual(await again.rejectedTotals(), { stale: 1 });
  assert.deepEqual(await storage.rejections('t'), {});
  assert.deepEqual(Array.from(again.params() ?? []), live);
  await again.close();
  await storage.close();
});

test('sha256Hex (token hashes) gives the FIPS 180-2 test vectors', () => {
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});
