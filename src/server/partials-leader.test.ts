/**
 * The partial-sum leader in one process (LocalPartialExchange, one SQLite file): aggregators fold
 * what they accept into partials, the coordinator folds partials once; re-deliveries, partials that
 * never arrive and a leader restart with unacknowledged partials neither lose nor double anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PartialTarget } from './aggregator.ts';
import { TaskCoordinator } from './coordinator.ts';
import { LocalLease } from './lease.ts';
import { LocalPartialExchange, type PartialAggregate, type PartialExchange } from './scaleout/partials.ts';
import { SqliteStorage } from './storage/sqlite.ts';
import { parseTaskSpec, taskRuntime } from './task.ts';

const SPEC = parseTaskSpec({
  taskId: 'pl',
  modelInput: { inputKind: 'dense', inputDim: 2, numClasses: 2 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 4, staleness: { kind: 'constant' } },
  evalEvery: 0,
});
const NUM = 6;

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('partial sums: folded once despite re-delivery, orphans folded from the journal, leader restart loses nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-pl-'));
  const storage = new SqliteStorage({ path: join(dir, 'db.sqlite') });
  await storage.init();
  const exchange = new LocalPartialExchange(200);
  const runtime = taskRuntime(SPEC);
  const lease = new LocalLease();
  const leaders: TaskCoordinator[] = [];
  const startLeader = async (id: string) => {
    const c = new TaskCoordinator(runtime, {
      storage,
      lease,
      holderId: id,
      tail: true,
      partials: { exchange, pullIntervalMs: 5, sweepIntervalMs: 50, orphanAfterMs: 300 },
    });
    await c.start();
    leaders.push(c);
    return c;
  };
  t.after(async () => {
    for (const c of leaders) await c.close();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let leader = await startLeader('L1');
  const version = () => (leader.ready ? leader.version : null);
  const aggA = new PartialTarget(runtime, storage, version, exchange, 'A', { flushMs: 5 });
  const aggB = new PartialTarget(runtime, storage, version, exchange, 'B', { flushMs: 5 });
  // An aggregator whose pushes never arrive (crashed before pushing, or the exchange lost them).
  const lost: PartialExchange = {
    push: async () => {
      throw new Error('exchange down');
    },
    pull: async () => [],
    ack: async () => {},
    takeOver: async () => [],
  };
  const aggLost = new PartialTarget(runtime, storage, version, lost, 'X', { flushMs: 5 });
  const x0 = Array.from(leader.params() ?? []);
  const submit = async (agg: PartialTarget, i: number) => {
    const r = await agg.submit({
      idempotencyKey: `k${i}`,
      deviceId: 'd',
      assignmentId: `k${i}`,
      baseVersion: leader.version,
      numExamples: 1,
      delta: new Float32Array(NUM).fill(i / 64),
    });
    assert.ok(!('kind' in r) && r.accepted && !r.duplicate, JSON.stringify(r));
  };

  // Version 1: updates 1–4 split over two aggregators.
  await submit(aggA, 1);
  await submit(aggB, 2);
  await submit(aggA, 3);
  await submit(aggB, 4);
  await until('version 1', () => leader.version === 1);
  // A forged re-delivery of seqs already folded (huge sum): skipped, the model unchanged.
  const forged: PartialAggregate = {
    id: 'replay',
    taskId: 'pl',
    aggregatorId: 'A',
    sum: new Float32Array(NUM).fill(1000),
    weight: 2,
    count: 2,
    keys: ['k1', 'k2'],
    seqs: [1, 2],
  };
  await exchange.push(forged);
  // A replayed key is answered from the journal and not folded again.
  const dup = await aggB.submit({
    idempotencyKey: 'k2',
    deviceId: 'd',
    assignmentId: 'k2',
    baseVersion: 0,
    numExamples: 1,
    delta: new Float32Array(NUM).fill(9),
  });
  assert.ok(!('kind' in dup) && dup.duplicate);

  // Version 2: two updates whose partial never arrives, two that do.
  await submit(aggLost, 5);
  await submit(aggLost, 6);
  await submit(aggA, 7);
  await submit(aggB, 8);
  await until('version 2 (orphans folded from the journal)', () => leader.version === 2);

  // Version 3: one update folded by a leader that stops before acknowledging (no step yet);
  // its successor gets the partial again and must fold it exactly once.
  await submit(aggA, 9);
  await until('update 9 folded', () => leader.counts.accepted === 9);
  await leader.close();
  leader = await startLeader('L2');
  assert.equal(leader.version, 2);
  await submit(aggB, 10);
  await submit(aggA, 11);
  await submit(aggB, 12);
  await until('version 3', () => leader.version === 3);
  await new Promise((r) => setTimeout(r, 400)); // a late double fold would step or move the model
  assert.equal(leader.version, 3);

  // FedBuff K=4, constant weights, n=1, SGD lr 1: each step subtracts the mean of its four deltas,
  // so x₃ = x₀ − Σᵢ₌₁¹² (i/64) / 4 (hand-computed; every update exactly once).
  const expected = 78 / 64 / 4;
  const x3 = leader.params() ?? new Float32Array(0);
  for (let j = 0; j < NUM; j++)
    assert.ok(Math.abs((x3[j] as number) - ((x0[j] as number) - expected)) < 1e-5);
  const cp = await storage.latestCheckpoint('pl');
  assert.equal(cp?.version, 3);
  await aggA.close();
  await aggB.close();
  await aggLost.close();
});
