/**
 * Deployment shapes: the roles as separate `orchard serve` processes sharing Redis (leases,
 * admission counters) and one storage, and the whole server on each storage backend (SQLite,
 * PostgreSQL) surviving a restart with the same model.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireService, startPostgres, startRedis } from '../testing/services.ts';
import { startServer } from './index.ts';
import { decodeFrame, type StatusResponse } from './protocol.ts';
import { SqliteStorage } from './storage/sqlite.ts';
import {
  checkinDevice,
  postUpdate,
  registerDevice,
  startServeChild,
  stopChild,
  type Train,
  uploadUpdate,
} from './test-helpers.ts';

const TASK = {
  taskId: 'deploy',
  modelInput: { inputKind: 'dense', inputDim: 3, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' } },
  concurrency: 2,
  evalEvery: 0,
};
const NUM_PARAMS = 8;

async function status(url: string): Promise<StatusResponse['tasks'][number] | undefined> {
  return ((await (await fetch(`${url}/v1/status`)).json()) as StatusResponse).tasks[0];
}

test('coordinator, selector and aggregator as separate processes over Redis; a second coordinator is refused', async (t) => {
  if (!requireService(t, 'redis')) return;
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-deploy-'));
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) await stopChild(c);
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const taskFile = join(dir, 'task.json');
  writeFileSync(taskFile, JSON.stringify(TASK));
  const common = ['--data-dir', join(dir, 'data'), '--task', taskFile, '--redis', redis.url];
  const coordinator = await startServeChild([...common, '--role', 'coordinator']);
  children.push(coordinator.child);
  const selector = await startServeChild([...common, '--role', 'selector']);
  children.push(selector.child);
  const aggregator = await startServeChild([...common, '--role', 'aggregator']);
  children.push(aggregator.child);

  // Each process serves only its roles' routes.
  const device = await registerDevice(selector.url, selector.enrollmentKey);
  const auth = { authorization: `Bearer ${device.token}` };
  assert.equal((await fetch(`${coordinator.url}/v1/checkin`, { method: 'POST', headers: auth })).status, 404);
  assert.equal(
    (await fetch(`${selector.url}/v1/tasks/deploy/updates`, { method: 'POST', headers: auth })).status,
    404,
  );
  const a = await checkinDevice(selector.url, device.token);
  const b = await checkinDevice(selector.url, device.token);
  assert.equal(a.action, 'train');
  assert.equal(b.action, 'train');
  // Concurrency 2 is shared through Redis: the coordinator sees both slots, a third device waits.
  assert.equal((await status(coordinator.url))?.inFlight, 2);
  assert.equal((await checkinDevice(selector.url, device.token)).action, 'wait');

  // The selector signed the assignments (shared secrets); one update goes to the coordinator
  // process's aggregator, one to the separate aggregator process; the coordinator folds both.
  const model = await fetch(`${coordinator.url}${(a as Train).modelUrl}`, { headers: auth });
  assert.equal(model.status, 200);
  const x0 = decodeFrame(new Uint8Array(await model.arrayBuffer())).floats;
  const ra = await uploadUpdate(
    coordinator.url,
    device.token,
    a as Train,
    new Float32Array(NUM_PARAMS).fill(0.125),
  );
  const rb = await uploadUpdate(
    aggregator.url,
    device.token,
    b as Train,
    new Float32Array(NUM_PARAMS).fill(0.375),
  );
  assert.deepEqual([ra.accepted, rb.accepted], [true, true]);
  // A replay at the other aggregator is recognized (the journal's key is shared).
  assert.equal(
    (await uploadUpdate(coordinator.url, device.token, b as Train, new Float32Array(NUM_PARAMS))).duplicate,
    true,
  );
  const deadline = Date.now() + 5000;
  let after = await status(coordinator.url);
  while (after?.version !== 1 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    after = await status(coordinator.url);
  }
  assert.equal(after?.version, 1);
  assert.equal(after?.inFlight, 0);
  // FedBuff K=2, constant weights, SGD lr 1: x₁ = x₀ − (0.125 + 0.375)/2, the replay applied once.
  const next = await fetch(`${coordinator.url}/v1/tasks/deploy/models/1`, { headers: auth });
  const x1 = decodeFrame(new Uint8Array(await next.arrayBuffer())).floats;
  for (let i = 0; i < NUM_PARAMS; i++)
    assert.ok(Math.abs((x1[i] as number) - ((x0[i] as number) - 0.25)) < 1e-6);
  // The selector learns the new version from the checkpoint the coordinator wrote (polled every 500 ms).
  await new Promise((r) => setTimeout(r, 1200));
  const third = await checkinDevice(selector.url, device.token);
  assert.equal(third.action === 'train' ? third.version : JSON.stringify(third), 1);

  // An update the aggregator process refuses (NaN) shows in the coordinator's counts by reason,
  // through the storage (added there within a second).
  const refused = await postUpdate(
    aggregator.url,
    device.token,
    third as Train,
    new Float32Array(NUM_PARAMS).fill(Number.NaN),
  );
  assert.equal(refused.status, 422, refused.text);
  let counted = await status(coordinator.url);
  const countDeadline = Date.now() + 5000;
  while (counted?.rejected.non_finite !== 1 && Date.now() < countDeadline) {
    await new Promise((r) => setTimeout(r, 100));
    counted = await status(coordinator.url);
  }
  assert.deepEqual(counted?.rejected, { non_finite: 1 });

  // The lease lives in Redis: another coordinator for the task cannot start.
  await assert.rejects(
    startServeChild([...common, '--role', 'coordinator']),
    /another coordinator holds the lease/,
  );
});

for (const backend of ['sqlite', 'postgres'] as const) {
  test(`server on ${backend}: updates survive a restart, same model and version`, async (t) => {
    if (backend === 'postgres' && !requireService(t, 'postgres')) return;
    const pg = backend === 'postgres' ? await startPostgres() : null;
    const dir = mkdtempSync(join(tmpdir(), `orchard-${backend}-`));
    t.after(async () => {
      await pg?.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const storage = pg === null ? `sqlite:${join(dir, 'db.sqlite')}` : pg.connectionString;
    const options = { storage, dataDir: dir, task: { ...TASK, concurrency: 100 } };
    let server = await startServer(options);
    const device = await registerDevice(server.url, server.enrollmentKey);
    for (let i = 0; i < 5; i++) {
      const a = (await checkinDevice(server.url, device.token)) as Train;
      await uploadUpdate(server.url, device.token, a, new Float32Array(NUM_PARAMS).fill(i / 8));
    }
    const before = {
      version: server.coordinator?.version,
      params: Array.from(server.coordinator?.params() ?? []),
    };
    assert.equal(before.version, 2); // 5 updates, buffers of 2
    const nan = (await checkinDevice(server.url, device.token)) as Train;
    const refused = await postUpdate(
      server.url,
      device.token,
      nan,
      new Float32Array(NUM_PARAMS).fill(Number.NaN),
    );
    assert.equal(refused.status, 422, refused.text);
    await server.close();
    server = await startServer(options);
    try {
      assert.deepEqual(
        { version: server.coordinator?.version, params: Array.from(server.coordinator?.params() ?? []) },
        before,
      );
      // Refusals are stored counts: the restarted server still reports the one before it.
      assert.deepEqual((await status(server.url))?.rejected, { non_finite: 1 });
      // The buffered fifth update was replayed from the journal: one more closes the buffer.
      const a = (await checkinDevice(server.url, device.token)) as Train;
      assert.equal(
        (await uploadUpdate(server.url, device.token, a, new Float32Array(NUM_PARAMS))).version,
        3,
      );
    } finally {
      await server.close();
    }
  });
}

test('Redis restarted mid-run: requests get 503 while it is down, the coordinator resumes, nothing acknowledged lost', async (t) => {
  if (!requireService(t, 'redis')) return;
  const redis = await startRedis();
  const { connectRedis, RedisAdmission, RedisLease } = await import('./scaleout/index.ts');
  const client = await connectRedis(redis.url, { commandTimeoutMs: 500 });
  const server = await startServer({
    storage: new SqliteStorage({ path: ':memory:' }),
    task: { ...TASK, concurrency: 100 },
    lease: new RedisLease(client),
    admission: new RedisAdmission(client),
    leaseTtlMs: 600,
  });
  t.after(async () => {
    await server.close();
    client.disconnect();
    await redis.stop();
  });
  const device = await registerDevice(server.url, server.enrollmentKey);
  const x0 = Array.from(server.coordinator?.params() ?? []);
  const values: number[] = [];
  /** One trip with retries (check-in and upload), as a device would do while Redis is away. */
  const trip = async (value: number) => {
    const deadline = Date.now() + 15_000;
    let assignment: Train | null = null;
    while (Date.now() < deadline) {
      try {
        if (assignment === null) {
          const c = await checkinDevice(server.url, device.token);
          if (c.action !== 'train') throw new Error('wait');
          assignment = c;
        }
        const r = await uploadUpdate(
          server.url,
          device.token,
          assignment,
          new Float32Array(NUM_PARAMS).fill(value),
        );
        values.push(value);
        return r;
      } catch (error) {
        assert.match(String(error), /503|wait/, 'only "unavailable" while Redis is away');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error('no trip succeeded within 15 s');
  };
  await trip(0.125);
  await trip(0.25);
  await redis.kill();
  const during = checkinDevice(server.url, device.token).then(
    () => null,
    (error: unknown) => String(error),
  );
  assert.match((await during) ?? '', /503/);
  await redis.start();
  await trip(0.5);
  await trip(0.125);
  assert.equal(server.coordinator?.version, 2);
  // FedBuff K=2, constant weights, SGD lr 1: x₂ = x₀ − Σ values / 2, each applied once.
  const sum = values.reduce((a, b) => a + b, 0);
  const x2 = server.coordinator?.params() ?? new Float32Array(0);
  for (let i = 0; i < NUM_PARAMS; i++)
    assert.ok(Math.abs((x2[i] as number) - ((x0[i] as number) - sum / 2)) < 1e-6);
});
