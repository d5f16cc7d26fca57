/**
 * Partial sums across processes: a coordinator, a selector and two aggregator processes of
 * `orchard serve` over one Redis and one SQLite file. Updates are split across the aggregators,
 * which push partial sums; the coordinator (leader) is kill -9'd mid-run and a successor takes over.
 * The final model must equal the single-process FedBuff result (hand-computed), every update
 * applied exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireService, startRedis } from '../testing/services.ts';
import { decodeFrame, type StatusResponse } from './protocol.ts';
import {
  checkinDevice,
  registerDevice,
  type ServeChild,
  startServeChild,
  stopChild,
  type Train,
  uploadUpdate,
} from './test-helpers.ts';

const TASK = {
  taskId: 'psum',
  modelInput: { inputKind: 'dense', inputDim: 3, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 6, staleness: { kind: 'constant' } },
  concurrency: 50,
  evalEvery: 0,
};
const NUM_PARAMS = 8;

async function version(url: string): Promise<number | undefined> {
  try {
    return ((await (await fetch(`${url}/v1/status`)).json()) as StatusResponse).tasks[0]?.version;
  } catch {
    return undefined;
  }
}

async function until(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('two aggregator processes push partial sums; the leader is killed mid-run; the model equals the single-process one', async (t) => {
  if (!requireService(t, 'redis')) return;
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'orchard-psum-'));
  const children: ServeChild[] = [];
  t.after(async () => {
    for (const c of children) await stopChild(c.child);
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const taskFile = join(dir, 'task.json');
  writeFileSync(taskFile, JSON.stringify(TASK));
  const common = [
    '--data-dir',
    join(dir, 'data'),
    '--task',
    taskFile,
    '--redis',
    redis.url,
    '--lease-ttl',
    '1000',
  ];
  const start = async (role: string) => {
    const child = await startServeChild([...common, '--role', role], 'serve');
    children.push(child);
    return child;
  };
  let coordinator = await start('coordinator');
  const selector = await start('selector');
  const aggregators = [await start('aggregator'), await start('aggregator')];
  const device = await registerDevice(selector.url, selector.enrollmentKey);
  const auth = { authorization: `Bearer ${device.token}` };
  const model = async (v: number) => {
    const res = await fetch(`${coordinator.url}/v1/tasks/psum/models/${v}`, { headers: auth });
    assert.equal(res.status, 200);
    return decodeFrame(new Uint8Array(await res.arrayBuffer())).floats;
  };
  const assignments = async (n: number, v: number) => {
    const out: Train[] = [];
    await until(`${n} assignments at version ${v}`, async () => {
      const c = await checkinDevice(selector.url, device.token);
      if (c.action === 'train' && c.version === v) out.push(c);
      return out.length >= n;
    });
    return out;
  };
  // Update i: delta filled with i/64, i examples; odd i to one aggregator, even to the other.
  const upload = async (a: Train, i: number) => {
    const r = await uploadUpdate(
      (aggregators[i % 2] as ServeChild).url,
      device.token,
      a,
      new Float32Array(NUM_PARAMS).fill(i / 64),
      i,
    );
    assert.equal(r.accepted, true);
    assert.equal(r.duplicate, false);
  };

  const x0 = await model(0);
  const first = await assignments(6, 0);
  for (const [k, a] of first.entries()) await upload(a, k + 1);
  await until('version 1', async () => (await version(coordinator.url)) === 1);
  const x1 = await model(1);

  const second = await assignments(6, 1);
  for (let k = 0; k < 3; k++) await upload(second[k] as Train, k + 7);
  await new Promise((r) => setTimeout(r, 200)); // the leader has pulled (not acknowledged) those partials
  await stopChild(coordinator.child); // kill -9 mid-run
  children.splice(children.indexOf(coordinator), 1);
  for (let k = 3; k < 6; k++) await upload(second[k] as Train, k + 7); // accepted while no leader runs
  await until('a successor coordinator', async () => {
    try {
      coordinator = await start('coordinator');
      return true;
    } catch {
      return false; // the dead leader's lease has not lapsed yet
    }
  });
  await until('version 2', async () => (await version(coordinator.url)) === 2);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await version(coordinator.url), 2, 'no late double fold moved the model on');
  const x2 = await model(2);

  // Single-process FedBuff, K=6, constant weights, SGD lr 1: each step subtracts Σ nᵢΔᵢ / Σ nᵢ, with
  // nᵢ = i and Δᵢ = i/64: step 1 = Σ₁⁶ i² / (64 · Σ₁⁶ i) = 91/(64·21), step 2 = 559/(64·57).
  for (let j = 0; j < NUM_PARAMS; j++) {
    assert.ok(Math.abs((x1[j] as number) - ((x0[j] as number) - 91 / 64 / 21)) < 1e-5, `x1[${j}]`);
    assert.ok(Math.abs((x2[j] as number) - ((x1[j] as number) - 559 / 64 / 57)) < 1e-5, `x2[${j}]`);
  }
});
