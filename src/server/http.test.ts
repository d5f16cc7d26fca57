/**
 * HTTP surface beyond hostile input: server-sent events, metrics with held-out accuracy, model
 * downloads with and without gzip, the dashboard route, and the coordinator's behaviour when it
 * loses its lease or its storage fails (503, then recovery from storage with nothing lost).
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { UPLOAD_PATH } from './http.ts';
import { type RunningServer, startServer } from './index.ts';
import type { Lease } from './lease.ts';
import { decodeFrame, type MetricsResponse, ROUTES, routePath } from './protocol.ts';
import { SqliteStorage } from './storage/sqlite.ts';
import { parseTaskSpec, taskRuntime } from './task.ts';
import { checkinDevice, registerDevice, type Train, uploadUpdate } from './test-helpers.ts';

const TASK = {
  taskId: 'live',
  dataset: { kind: 'synthetic', numClients: 20, dim: 6, numClasses: 3, testSize: 300 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' } },
  evalEvery: 1,
};
const NUM_PARAMS = 21; // 6 × 3 + 3

let server: RunningServer;
let token: string;

before(async () => {
  server = await startServer({ storage: new SqliteStorage({ path: ':memory:' }), task: TASK });
  token = (await registerDevice(server.url, server.enrollmentKey)).token;
});
after(async () => {
  await server?.close();
});

function raw(
  path: string,
  headers: Record<string, string>,
): Promise<{ headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}${path}`, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

test('events stream versions and metrics; /v1/metrics has held-out accuracy per evaluated version', async () => {
  const controller = new AbortController();
  const res = await fetch(`${server.url}/v1/events`, { signal: controller.signal });
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  const waitFor = async (pattern: RegExp) => {
    const deadline = Date.now() + 5000;
    while (!pattern.test(text)) {
      if (Date.now() > deadline) throw new Error(`no ${pattern} in ${text}`);
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      text += decoder.decode(value, { stream: true });
    }
  };
  await waitFor(/event: version\ndata: \{"taskId":"live","version":0/);
  for (let i = 0; i < 2; i++) {
    const a = (await checkinDevice(server.url, token)) as Train;
    await uploadUpdate(server.url, token, a, new Float32Array(NUM_PARAMS).fill(0.05));
  }
  await waitFor(/event: version\ndata: \{"taskId":"live","version":1/);
  await waitFor(/event: metrics\ndata: \{"taskId":"live","version":1,[^\n]*"accuracy"/);
  controller.abort();

  const metrics = (await (await fetch(`${server.url}/v1/metrics?taskId=live`)).json()) as MetricsResponse;
  const versions = metrics.metrics.map((m) => m.version);
  assert.deepEqual(versions, [0, 1]);
  for (const m of metrics.metrics) {
    const accuracy = m.values.accuracy as number;
    assert.ok(accuracy >= 0 && accuracy <= 1, String(accuracy));
    assert.ok(Number.isFinite(m.values.loss as number));
  }
  assert.equal(metrics.metrics[1]?.values.accepted, 2);
  const bad = await fetch(`${server.url}/v1/metrics?taskId=nope`);
  assert.equal(bad.status, 404);
});

test('model download: identity and gzip carry the same frame; the dashboard is served at /', async () => {
  const auth = { authorization: `Bearer ${token}` };
  const plain = await raw('/v1/tasks/live/models/latest', auth);
  assert.equal(plain.headers['content-encoding'], undefined);
  const frame = decodeFrame<{ taskId: string; version: number }>(new Uint8Array(plain.body));
  assert.equal(frame.header.taskId, 'live');
  assert.equal(frame.floats.length, NUM_PARAMS);
  assert.deepEqual(Array.from(frame.floats), Array.from(server.coordinator?.params() ?? []));
  const zipped = await raw('/v1/tasks/live/models/latest', { ...auth, 'accept-encoding': 'gzip, deflate' });
  // gzip only when it saves ≥ 10%; either way the frame is the same.
  const body = zipped.headers['content-encoding'] === 'gzip' ? gunzipSync(zipped.body) : zipped.body;
  if (zipped.headers['content-encoding'] === 'gzip') assert.ok(zipped.body.length < plain.body.length * 0.9);
  assert.deepEqual(body, plain.body);
  const page = await fetch(`${server.url}/`);
  if (page.status === 200) assert.match(await page.text(), /<html/i);
  else assert.equal(page.status, 404);
});

test('a coordinator that loses its lease stops (503, check-ins wait) and resumes from storage when it is back', async (t) => {
  let held = true;
  const lease: Lease = {
    tryAcquire: async () => held,
    release: async () => {},
  };
  const s = await startServer({
    storage: new SqliteStorage({ path: ':memory:' }),
    task: { ...TASK, taskId: 'leased', evalEvery: 0 },
    lease,
    leaseTtlMs: 300,
  });
  t.after(() => s.close());
  const device = await registerDevice(s.url, s.enrollmentKey);
  const a = (await checkinDevice(s.url, device.token)) as Train;
  held = false;
  const deadline = Date.now() + 10_000;
  while (s.coordinator?.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.coordinator?.ready, false);
  await assert.rejects(
    uploadUpdate(s.url, device.token, a, new Float32Array(NUM_PARAMS)),
    /503.*unavailable/,
  );
  assert.equal((await checkinDevice(s.url, device.token)).action, 'wait');
  held = true;
  while (!s.coordinator?.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await uploadUpdate(s.url, device.token, a, new Float32Array(NUM_PARAMS))).accepted, true);
});

for (const mode of ['folded', 'journal'] as const)
  test(`a failed ${mode === 'folded' ? 'folded commit' : 'journal append'} answers 503, rebuilds from storage, and the retry is applied once`, async (t) => {
    const storage = new SqliteStorage({ path: ':memory:' });
    let failNext = false;
    const append = storage.appendAccepted.bind(storage);
    const commit = storage.commitFolded.bind(storage);
    const failOnce = () => {
      if (!failNext) return;
      failNext = false;
      throw new Error('disk full');
    };
    storage.appendAccepted = async (entry) => {
      failOnce();
      return append(entry);
    };
    storage.commitFolded = async (group) => {
      failOnce();
      return commit(group);
    };
    const s = await startServer({
      storage,
      task: { ...TASK, taskId: 'faulty', evalEvery: 0 },
      journalDeltas: mode === 'journal',
    });
    t.after(() => s.close());
    const device = await registerDevice(s.url, s.enrollmentKey);
    const first = (await checkinDevice(s.url, device.token)) as Train;
    await uploadUpdate(s.url, device.token, first, new Float32Array(NUM_PARAMS).fill(0.25));
    const second = (await checkinDevice(s.url, device.token)) as Train;
    failNext = true;
    await assert.rejects(
      uploadUpdate(s.url, device.token, second, new Float32Array(NUM_PARAMS).fill(0.5)),
      /503/,
    );
    const deadline = Date.now() + 5000;
    while (!s.coordinator?.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const retried = await uploadUpdate(s.url, device.token, second, new Float32Array(NUM_PARAMS).fill(0.5));
    assert.deepEqual([retried.duplicate, retried.version], [false, 1]);
    // FedBuff K=2, constant weights, SGD lr 1: x₁ = x₀ − (0.25 + 0.5)/2 in every coordinate.
    const x0 = taskRuntime(parseTaskSpec({ ...TASK, taskId: 'faulty' })).initialParams;
    const x1 = s.coordinator?.params() ?? new Float32Array(0);
    for (let i = 0; i < NUM_PARAMS; i++)
      assert.ok(Math.abs((x1[i] as number) - ((x0[i] as number) - 0.375)) < 1e-6);
  });

test('the upload route served outside fastify matches ROUTES.update and nothing else', () => {
  for (const taskId of ['fuzz', 'a b/ü?#%', 'x'.repeat(200)]) {
    const path = routePath(ROUTES.update, { taskId });
    for (const suffix of ['', '?x=1']) {
      const m = UPLOAD_PATH.exec(path + suffix);
      assert.ok(m !== null, path + suffix);
      assert.equal(decodeURIComponent(m[1] as string), taskId);
    }
  }
  for (const other of [
    ROUTES.checkin,
    ROUTES.status,
    routePath(ROUTES.model, { taskId: 't', version: 1 }),
    '/v1/tasks/t/updates/',
    '/v1/tasks//updates',
    '/v1/tasks/a/b/updates',
    '/v2/tasks/t/updates',
  ])
    assert.equal(UPLOAD_PATH.exec(other), null, other);
});
