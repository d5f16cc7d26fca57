import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { trainLocal } from '../fl/client.ts';
import { createModel } from '../nn/index.ts';
import { OrchardClient, type OrchardClientOptions } from './client.ts';
import { ApiError, OrchardClientError } from './errors.ts';
import { JsonFileStore, nodePlatform } from './platform/node.ts';
import { fromBase64, MemoryStore, toBase64 } from './platform.ts';
import { backoffDelay, DEFAULT_RETRY } from './retry.ts';
import { FakeServer } from './testing/fake-server.ts';
import { localTrainer } from './trainer.ts';

const data = syntheticDataset({
  alpha: 1,
  beta: 1,
  numClients: 4,
  dim: 12,
  numClasses: 5,
  examplesPerClient: 30,
  examplesSigma: 0,
  testSize: 50,
  seed: 3,
});
const device = data.client(0);
const modelSpec = { kind: 'softmax' } as const;
const local = { epochs: 1, batchSize: 10, lr: 0.1 };
const model = createModel(modelSpec, data);
const initial = model.init(new Rng(9));
const FAST = { baseDelayMs: 5, maxDelayMs: 40, requestTimeoutMs: 2000 };

async function fakeServer(
  t: { after(fn: () => Promise<void>): void },
  extra: { bufferSize?: number; concurrency?: number; waitMs?: number; finishAtVersion?: number } = {},
): Promise<FakeServer> {
  const server = await new FakeServer({
    initialParams: initial,
    plan: { model: modelSpec, localTrain: local },
    ...extra,
  }).start();
  t.after(() => server.close());
  return server;
}

function client(server: FakeServer, over: Partial<OrchardClientOptions> = {}): OrchardClient {
  return new OrchardClient({
    server: server.url,
    platform: nodePlatform(),
    enrollmentKey: server.enrollmentKey,
    trainer: localTrainer(device, { numClasses: 5, seed: 21 }),
    retry: FAST,
    ...over,
  });
}

test('one trip uploads exactly the delta trainLocal computes, and a K=1 server step subtracts it', async (t) => {
  const server = await fakeServer(t);
  const outcome = await client(server).runOnce();
  assert.equal(outcome.kind, 'accepted');
  assert.equal(server.applied.length, 1);
  // Second method: train the same model from the same parameters with the same seeded stream.
  const expected = trainLocal(model, initial, device, local, new Rng(21));
  const got = server.applied[0];
  assert.ok(got);
  assert.equal(got.numExamples, 30);
  assert.equal(got.baseVersion, 0);
  assert.deepEqual(Array.from(got.delta), Array.from(expected.delta));
  assert.ok(
    expected.delta.some((v) => v !== 0),
    'training moved the parameters',
  );
  const after = server.params(1);
  for (let i = 0; i < after.length; i += 7)
    assert.equal(after[i], Math.fround((initial[i] as number) - (expected.delta[i] as number)));
});

test('an answer lost after the server applied the update is retried with the same key and applied once', async (t) => {
  const server = await fakeServer(t);
  server.inject('update', { kind: 'reset-after-apply' });
  const outcome = await client(server).runOnce();
  assert.equal(outcome.kind, 'accepted');
  assert.equal(outcome.kind === 'accepted' && outcome.response.duplicate, true);
  assert.equal(server.applied.length, 1);
  const uploads = server.requests.filter((r) => r.route === 'update');
  assert.equal(uploads.length, 2);
  assert.equal(uploads[0]?.idempotencyKey, uploads[1]?.idempotencyKey);
});

test('503/unavailable and resets are retried, waiting at least the server hint', async (t) => {
  const server = await fakeServer(t);
  server.inject(
    'checkin',
    { kind: 'status', status: 503, code: 'unavailable', retryAfterMs: 150 },
    { kind: 'reset' },
  );
  server.inject('model', { kind: 'status', status: 500, code: 'internal' });
  const started = Date.now();
  const outcome = await client(server).runOnce();
  assert.equal(outcome.kind, 'accepted');
  assert.ok(Date.now() - started >= 150, 'the retry waited for retryAfterMs');
  assert.deepEqual(
    server.requests.filter((r) => r.route === 'checkin').map((r) => r.status),
    [503, 0, 200],
  );
  assert.equal(server.applied.length, 1);
});

test('a device restarted with an unsent upload re-sends the same bytes under the same key (applied once)', async (t) => {
  const server = await fakeServer(t);
  const dir = mkdtempSync(join(tmpdir(), 'orchard-client-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'device.json');
  // The first run's uploads all die after the server applied the first one: the device never learns
  // it succeeded and gives up with the upload still persisted.
  server.inject('update', { kind: 'reset-after-apply' }, { kind: 'reset' }, { kind: 'reset' });
  const first = client(server, {
    platform: nodePlatform({ storage: new JsonFileStore(file) }),
    retry: { ...FAST, maxAttempts: 3 },
  });
  await assert.rejects(
    first.runOnce(),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'retries_exhausted',
  );
  assert.equal(server.applied.length, 1);
  const persisted = await first.pendingUpload();
  assert.ok(persisted);
  // A new process: fresh objects over the same file; no enrollment key needed any more.
  const second = new OrchardClient({
    server: server.url,
    platform: nodePlatform({ storage: new JsonFileStore(file) }),
    trainer: () => {
      throw new Error('a resumed upload must not retrain');
    },
    retry: FAST,
  });
  const outcome = await second.runOnce();
  assert.equal(outcome.kind, 'accepted');
  assert.equal(outcome.kind === 'accepted' && outcome.resumed, true);
  assert.equal(outcome.kind === 'accepted' && outcome.response.duplicate, true);
  assert.equal(server.applied.length, 1);
  const keys = new Set(server.requests.filter((r) => r.route === 'update').map((r) => r.idempotencyKey));
  assert.deepEqual([...keys], [persisted.idempotencyKey]);
  assert.equal(await second.pendingUpload(), null);
  assert.equal(server.requests.filter((r) => r.route === 'register').length, 1, 'the token was reused');
});

test('a final 4xx is a typed error: not retried, and a refused update is discarded', async (t) => {
  const server = await fakeServer(t);
  const c = client(server);
  server.inject('update', { kind: 'status', status: 409, code: 'stale' });
  const outcome = await c.runOnce();
  assert.equal(outcome.kind, 'rejected');
  assert.ok(outcome.kind === 'rejected' && outcome.error instanceof ApiError);
  assert.equal(outcome.kind === 'rejected' && outcome.error.code, 'stale');
  assert.equal(server.requests.filter((r) => r.route === 'update').length, 1);
  assert.equal(await c.pendingUpload(), null);
  assert.equal(server.applied.length, 0);

  server.revoke((await c.register()).deviceId);
  await assert.rejects(
    c.runOnce(),
    (e: unknown) => e instanceof ApiError && e.code === 'revoked' && e.status === 401,
  );
  assert.equal(server.requests.filter((r) => r.route === 'checkin').length, 2, 'revoked is not retried');

  const wrongKey = client(server, { enrollmentKey: 'nope' });
  await assert.rejects(
    wrongKey.register(),
    (e: unknown) => e instanceof ApiError && e.code === 'unauthenticated',
  );
});

test('check-in wait advice paces run(): the device sleeps retryAfterMs before asking again', async (t) => {
  const server = await fakeServer(t, { concurrency: 1, waitMs: 120 });
  const busy = client(server);
  const held = await busy.checkin();
  assert.equal(held.action, 'train');
  const waiting = client(server);
  const outcomes: string[] = [];
  const started = Date.now();
  const run = waiting.run({ trips: 1, onTrip: (o) => outcomes.push(o.kind) });
  // Free the slot only after the waiting device was told to wait at least once.
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(held.action === 'train');
  await busy.submit(await busy.prepare(held));
  await run;
  assert.deepEqual(outcomes, ['wait', 'accepted']);
  assert.ok(Date.now() - started >= 120);
  assert.equal(server.requests.filter((r) => r.route === 'checkin').length, 3);
});

test('a task that finished for good ends run() without waiting for its long pacing; a held upload is refused as finished', async (t) => {
  const server = await fakeServer(t, { bufferSize: 1, finishAtVersion: 2 });
  const late = client(server);
  const held = await late.checkin();
  assert.equal(held.action, 'train');
  const device = client(server);
  const outcomes: string[] = [];
  const started = Date.now();
  // trips unbounded: only the server's finish can end this run (its wait advice is one hour).
  const all = await device.run({ onTrip: (o) => outcomes.push(o.kind) });
  assert.deepEqual(outcomes, ['accepted', 'accepted', 'finished']);
  const last = all.at(-1);
  assert.ok(last?.kind === 'finished');
  assert.deepEqual(
    last.tasks.map((f) => [f.taskId, f.reason]),
    [[server.taskId, 'privacy_budget']],
  );
  assert.ok(Date.now() - started < 60_000);
  assert.equal(server.version, 2);
  assert.ok(held.action === 'train');
  const refused = await late.submit(await late.prepare(held));
  assert.equal(refused.kind, 'rejected');
  assert.equal(refused.kind === 'rejected' ? refused.error.code : '', 'finished');
  assert.equal(server.version, 2);
  assert.equal(server.applied.length, 2);
});

test('retries stop at the deadline even with attempts left', async (t) => {
  const server = await fakeServer(t);
  server.inject('register', ...Array.from({ length: 50 }, () => ({ kind: 'reset' as const })));
  const c = client(server, {
    retry: { baseDelayMs: 40, maxDelayMs: 40, maxAttempts: 50, deadlineMs: 200, requestTimeoutMs: 1000 },
  });
  const started = Date.now();
  await assert.rejects(
    c.register(),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'retries_exhausted',
  );
  assert.ok(Date.now() - started < 1000);
  assert.ok(server.requests.length < 50);
});

test('backoff: full jitter under a capped exponential ceiling, floored by the server hint', () => {
  const p = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 300 };
  // attempt 1 → ceiling 100, attempt 2 → 200, attempt 3 → min(300, 400) = 300.
  assert.equal(backoffDelay(p, 1, 0.5), 50);
  assert.equal(backoffDelay(p, 2, 0.5), 100);
  assert.equal(backoffDelay(p, 3, 0.5), 150);
  assert.equal(backoffDelay(p, 30, 0.999), 299);
  assert.equal(backoffDelay(p, 2, 0.1, 500), 500);
});

test('bad options are typed errors', () => {
  const base = { platform: nodePlatform(), trainer: () => ({ delta: new Float32Array(0), numExamples: 0 }) };
  assert.throws(
    () => new OrchardClient({ ...base, server: 'ftp://x' }),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'invalid_argument',
  );
  assert.throws(
    () => new OrchardClient({ ...base, server: 'not a url' }),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'invalid_argument',
  );
  assert.throws(
    () => new OrchardClient({ ...base, server: 'http://x', retry: { maxAttempts: 0 } }),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'invalid_argument',
  );
});

test('an unregistered device without an enrollment key is told so before any request', async () => {
  const c = new OrchardClient({
    server: 'http://127.0.0.1:9',
    platform: nodePlatform({ fetch: () => Promise.reject(new Error('no request expected')) }),
    trainer: () => ({ delta: new Float32Array(0), numExamples: 0 }),
  });
  await assert.rejects(
    c.checkin(),
    (e: unknown) => e instanceof OrchardClientError && e.code === 'invalid_argument',
  );
});

test('base64 and the stores agree with Node Buffer', async () => {
  const rng = new Rng(5);
  for (const n of [0, 1, 2, 3, 4, 5, 100, 1001]) {
    const bytes = Uint8Array.from({ length: n }, () => rng.int(256));
    const b64 = toBase64(bytes);
    assert.equal(b64, Buffer.from(bytes).toString('base64'));
    assert.deepEqual(fromBase64(b64), bytes);
  }
  assert.throws(() => fromBase64('ab$='));
  const m = new MemoryStore();
  await m.set('k', new Uint8Array([1, 2]));
  assert.deepEqual(await m.get('k'), new Uint8Array([1, 2]));
  await m.delete('k');
  assert.equal(await m.get('k'), null);
});

test('an assignment whose model version is gone ends as expired, and the next trip checks in again', async (t) => {
  const server = await fakeServer(t);
  const c = client(server);
  server.inject('model', { kind: 'status', status: 404, code: 'not_found' });
  const outcome = await c.runOnce();
  assert.equal(outcome.kind, 'expired');
  assert.equal(server.requests.filter((r) => r.route === 'model').length, 1, 'a 404 is not retried');
  const next = await c.runOnce();
  assert.equal(next.kind, 'accepted');
  assert.equal(server.requests.filter((r) => r.route === 'checkin').length, 2);
});

test('a rate limit longer than the retry budget becomes wait advice', async (t) => {
  const server = await fakeServer(t);
  const c = client(server, { retry: { ...FAST, deadlineMs: 1000 } });
  await c.register();
  server.inject('checkin', { kind: 'status', status: 429, code: 'rate_limited', retryAfterMs: 60_000 });
  const outcome = await c.runOnce();
  assert.deepEqual(
    outcome.kind === 'wait' ? { kind: outcome.kind, retryAfterMs: outcome.retryAfterMs } : outcome,
    { kind: 'wait', retryAfterMs: 60_000 },
  );
  assert.equal(server.requests.filter((r) => r.route === 'checkin').length, 1);
});
