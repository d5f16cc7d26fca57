import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import { skipUnlessService } from '../../testing/services.ts';
import { ScaleoutError } from './errors.ts';
import {
  type DeliveredPartial,
  LocalPartialExchange,
  type PartialAggregate,
  type PartialExchange,
  PartialFolder,
  RedisPartialExchange,
} from './partials.ts';
import { eventually, sharedTestRedis, sleep } from './testkit.ts';

const redis = sharedTestRedis();
const redisSkip = skipUnlessService('redis');
const CLAIM_IDLE_MS = 150;
const isCode = (code: string) => (e: unknown) => e instanceof ScaleoutError && e.code === code;

/** Partial number i of an aggregator: integer-valued sums, so float32 totals are exact in any order. */
function partial(taskId: string, agg: string, i: number, dim = 4): PartialAggregate {
  const sum = new Float32Array(dim);
  for (let j = 0; j < dim; j++) sum[j] = ((i * 7 + j * 3) % 11) - 5;
  return {
    id: `${agg}:${i}`,
    taskId,
    aggregatorId: agg,
    sum,
    weight: i + 1,
    count: 2,
    keys: [`k${i}a`, `k${i}b`],
    seqs: [2 * i + 1, 2 * i + 2],
  };
}

/** The independent reference: plain float64 sums over the distinct partials. */
function expectedTotal(parts: PartialAggregate[]) {
  const dim = parts[0]?.sum.length ?? 0;
  const sum = new Array<number>(dim).fill(0);
  let weight = 0;
  for (const p of parts) {
    for (let j = 0; j < dim; j++) sum[j] = (sum[j] ?? 0) + (p.sum[j] ?? 0);
    weight += p.weight;
  }
  return { sum, weight };
}

/** Pulls until nothing arrives for a while, folding and acknowledging each batch. */
async function drain(
  x: PartialExchange,
  taskId: string,
  leader: string,
  folder: PartialFolder,
): Promise<void> {
  for (;;) {
    const batch = await x.pull(taskId, leader, 8, 100);
    if (batch.length === 0) return;
    folder.fold(batch);
    await x.ack(
      taskId,
      batch.map((d) => d.deliveryId),
    );
  }
}

function exchangeSuite(
  name: string,
  make: () => Promise<() => Promise<PartialExchange>>,
  skip: string | false,
) {
  describe(`partial exchange: ${name}`, { skip }, () => {
    let n = 0;
    const task = () => `task-${name}-${++n}`;

    test('push, pull oldest first, ack: sums arrive bit-exact and are delivered once', async () => {
      const handle = await make();
      const agg = await handle();
      const leader = await handle();
      const t = task();
      const odd = partial(t, 'A', 0);
      const bits = new Uint32Array([0x80000000, 0x00000001, 0x7f7fffff, 0x3eaaaaab]);
      const exact: PartialAggregate = { ...odd, sum: new Float32Array(bits.buffer) };
      await agg.push(exact);
      await agg.push(partial(t, 'A', 1));
      const got = await leader.pull(t, 'L', 10, 500);
      assert.deepEqual(
        got.map((d) => d.partial.id),
        ['A:0', 'A:1'],
      );
      const first = got[0]?.partial;
      assert.ok(first);
      assert.deepEqual([...new Uint32Array(first.sum.buffer)], [...bits]);
      assert.deepEqual({ ...first, sum: null }, { ...exact, sum: null });
      await leader.ack(
        t,
        got.map((d) => d.deliveryId),
      );
      assert.deepEqual(await leader.pull(t, 'L', 10, 0), []);
      await sleep(CLAIM_IDLE_MS + 50);
      assert.deepEqual(await leader.pull(t, 'L2', 10, 0), [], 'acknowledged partials are never re-delivered');
    });

    test('a leader that crashes before acking: its partials go to the next leader, folded exactly once', async () => {
      const handle = await make();
      const agg = await handle();
      const t = task();
      const all = Array.from({ length: 10 }, (_, i) => partial(t, 'A', i));
      for (const p of all) await agg.push(p);
      // Leader 1 folds 6, saves its state (model + applied ids), acks only the first 3, then dies.
      const leader1 = await handle();
      const got = await leader1.pull(t, 'L1', 6, 500);
      assert.equal(got.length, 6);
      const folder1 = new PartialFolder(4);
      folder1.fold(got);
      const saved = {
        sum: Float32Array.from(folder1.sum),
        weight: folder1.weight,
        ids: [...folder1.appliedIds],
      };
      await leader1.ack(
        t,
        got.slice(0, 3).map((d) => d.deliveryId),
      );
      // Leader 2 wins the lease, restores the saved state and takes over what leader 1 held.
      const leader2 = await handle();
      const folder2 = new PartialFolder(4, saved.ids);
      folder2.sum.set(saved.sum);
      folder2.weight = saved.weight;
      const taken = await leader2.takeOver(t, 'L2');
      assert.deepEqual(
        taken.map((d) => d.partial.id),
        ['A:3', 'A:4', 'A:5'],
      );
      const redelivered: DeliveredPartial[] = [];
      for (let batch = taken; ; batch = await leader2.pull(t, 'L2', 4, 100)) {
        if (batch.length === 0) break;
        redelivered.push(...batch);
        assert.deepEqual(
          folder2
            .fold(batch)
            .map((p) => p.id)
            .filter((id) => saved.ids.includes(id)),
          [],
          'nothing folded twice',
        );
        await leader2.ack(
          t,
          batch.map((d) => d.deliveryId),
        );
      }
      assert.deepEqual(redelivered.map((d) => d.partial.id).sort(), [
        'A:3',
        'A:4',
        'A:5',
        'A:6',
        'A:7',
        'A:8',
        'A:9',
      ]);
      const want = expectedTotal(all);
      assert.deepEqual([...folder2.sum], want.sum);
      assert.equal(folder2.weight, want.weight);
      assert.equal(folder2.appliedIds.size, 10);
    });

    test("without takeOver, a crashed leader's partials are re-delivered after claimIdleMs", async () => {
      const handle = await make();
      const x = await handle();
      const t = task();
      await x.push(partial(t, 'A', 0));
      assert.equal((await x.pull(t, 'dead', 5, 500)).length, 1);
      assert.deepEqual(await x.pull(t, 'alive', 5, 0), [], 'not yet idle long enough');
      await sleep(CLAIM_IDLE_MS + 50);
      const again = await x.pull(t, 'alive', 5, 0);
      assert.deepEqual(
        again.map((d) => d.partial.id),
        ['A:0'],
      );
    });

    test('several aggregators pushing concurrently, duplicates included: each partial folded once', async () => {
      const handle = await make();
      const t = task();
      const aggs = await Promise.all(['A', 'B', 'C'].map(async (name) => ({ name, x: await handle() })));
      const all = aggs.flatMap(({ name }) => Array.from({ length: 12 }, (_, i) => partial(t, name, i)));
      const rng = new Rng(11);
      // Some pushes are retried (the aggregator lost the answer): the same partial is queued twice.
      const pushes = all.flatMap((p) => (rng.next() < 0.3 ? [p, p] : [p]));
      const leader = await handle();
      const folder = new PartialFolder(4);
      await Promise.all([
        ...aggs.map(async ({ name, x }) => {
          for (const p of pushes.filter((q) => q.aggregatorId === name)) await x.push(p);
        }),
        drain(leader, t, 'L', folder),
      ]);
      await drain(leader, t, 'L', folder);
      const want = expectedTotal(all);
      assert.deepEqual([...folder.sum], want.sum);
      assert.equal(folder.weight, want.weight);
      assert.equal(folder.count, all.length * 2);
      assert.equal(folder.appliedIds.size, all.length);
    });

    test('malformed partials are INVALID_INPUT and never queued', async () => {
      const x = await (await make())();
      const t = task();
      const good = partial(t, 'A', 0);
      await assert.rejects(
        x.push({ ...good, sum: new Float32Array([1, Number.NaN]) }),
        isCode('INVALID_INPUT'),
      );
      await assert.rejects(x.push({ ...good, weight: -1 }), isCode('INVALID_INPUT'));
      await assert.rejects(x.push({ ...good, id: '' }), isCode('INVALID_INPUT'));
      await assert.rejects(x.push({ ...good, seqs: [0] }), isCode('INVALID_INPUT'));
      assert.deepEqual(await x.pull(t, 'L', 5, 0), []);
    });
  });
}

exchangeSuite(
  'local',
  async () => {
    const shared = new LocalPartialExchange(CLAIM_IDLE_MS);
    return async () => shared;
  },
  false,
);
exchangeSuite(
  'redis',
  async () => async () => new RedisPartialExchange(await redis.client(), CLAIM_IDLE_MS),
  redisSkip,
);

test('PartialFolder rejects a partial of the wrong size', () => {
  const f = new PartialFolder(3);
  assert.throws(
    () => f.fold([{ deliveryId: '1', partial: partial('t', 'A', 0, 4) }]),
    isCode('INVALID_INPUT'),
  );
  assert.equal(f.appliedIds.size, 0);
});

test('redis exchange: Redis restarted mid-run → typed errors, STATE_LOST once, no partial folded twice', {
  skip: redisSkip,
}, async () => {
  const r = await redis.get();
  const agg = new RedisPartialExchange(await redis.client(), CLAIM_IDLE_MS);
  const leader = new RedisPartialExchange(await redis.client(), CLAIM_IDLE_MS);
  const t = 'restart-task';
  const folder = new PartialFolder(4);
  for (let i = 0; i < 3; i++) await agg.push(partial(t, 'A', i));
  const got = await leader.pull(t, 'L', 2, 500);
  folder.fold(got);
  await leader.ack(t, [got[0]?.deliveryId ?? '']);
  await r.kill();
  await assert.rejects(agg.push(partial(t, 'A', 3)), isCode('BACKEND_UNAVAILABLE'));
  await assert.rejects(leader.pull(t, 'L', 5, 0), isCode('BACKEND_UNAVAILABLE'));
  await assert.rejects(leader.ack(t, ['1-0']), isCode('BACKEND_UNAVAILABLE'));
  await r.start();
  // The aggregator retries the push it could not deliver.
  await eventually(() => agg.push(partial(t, 'A', 3)));
  // The leader learns that Redis lost the queue (A:2 was never delivered: rebuild it from the journal).
  let lost: unknown = null;
  const until = Date.now() + 5000;
  while (lost === null && Date.now() < until) {
    try {
      await leader.pull(t, 'L', 5, 0);
      assert.fail('pull after the restart must report STATE_LOST first');
    } catch (err) {
      if (!isCode('BACKEND_UNAVAILABLE')(err)) lost = err;
      else await sleep(50);
    }
  }
  assert.ok(isCode('STATE_LOST')(lost), String(lost));
  const after = await leader.pull(t, 'L', 5, 500);
  assert.deepEqual(
    after.map((d) => d.partial.id),
    ['A:3'],
  );
  const folded = folder.fold(after);
  await leader.ack(
    t,
    after.map((d) => d.deliveryId),
  );
  assert.deepEqual(
    folded.map((p) => p.id),
    ['A:3'],
  );
  assert.deepEqual([...folder.appliedIds].sort(), ['A:0', 'A:1', 'A:3']);
  assert.deepEqual([...folder.sum], expectedTotal([0, 1, 3].map((i) => partial(t, 'A', i))).sum);
  assert.deepEqual(await leader.pull(t, 'L', 5, 0), []);
});
