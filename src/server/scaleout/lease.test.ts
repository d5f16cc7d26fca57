import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { skipUnlessService } from '../../testing/services.ts';
import { ScaleoutError } from './errors.ts';
import { type FencedLease, LocalFencedLease, RedisLease } from './lease.ts';
import { sharedTestRedis, sleep } from './testkit.ts';

const isCode = (code: string) => (e: unknown) => e instanceof ScaleoutError && e.code === code;

const redis = sharedTestRedis();
const client = () => redis.client();
const getRedis = () => redis.get();

/** One suite, run against the in-process and the Redis lease. `make` returns independent handles on one lease space. */
function leaseSuite(name: string, make: () => Promise<() => Promise<FencedLease>>, skip: string | false) {
  describe(`lease: ${name}`, { skip }, () => {
    let n = 0;
    const key = () => `task-${name}-${++n}`;

    test('one holder at a time; renewals keep the token; release lets the next holder in with a larger token', async () => {
      const handle = await make();
      const a = await handle();
      const b = await handle();
      const k = key();
      const first = await a.acquire(k, 'A', 5000);
      assert.ok(first);
      assert.equal(await b.acquire(k, 'B', 5000), null);
      assert.equal(await b.tryAcquire(k, 'B', 5000), false);
      assert.equal(await a.holder(k), 'A');
      assert.deepEqual(await a.acquire(k, 'A', 5000), first, 'renewal keeps the token');
      await b.release(k, 'B'); // not the holder: no effect
      assert.equal(await b.holder(k), 'A');
      await a.release(k, 'A');
      assert.equal(await b.holder(k), null);
      const second = await b.acquire(k, 'B', 5000);
      assert.ok(second);
      assert.ok(second.fencingToken > first.fencingToken);
      assert.equal(await a.tryAcquire(k, 'A', 5000), false);
    });

    test('an expired lease can be taken by another holder, with a larger token', async () => {
      const handle = await make();
      const a = await handle();
      const b = await handle();
      const k = key();
      const first = await a.acquire(k, 'A', 60);
      assert.ok(first);
      assert.equal(await b.acquire(k, 'B', 60), null);
      await sleep(120);
      const second = await b.acquire(k, 'B', 5000);
      assert.ok(second && second.fencingToken > first.fencingToken);
      // A's renewal now fails: it must stop acting.
      assert.equal(await a.tryAcquire(k, 'A', 5000), false);
    });

    test('many holders racing for one key: exactly one wins', async () => {
      const handle = await make();
      const k = key();
      const contenders = await Promise.all(Array.from({ length: 12 }, () => handle()));
      const results = await Promise.all(contenders.map((l, i) => l.acquire(k, `H${i}`, 5000)));
      const winners = results.flatMap((r, i) => (r ? [i] : []));
      assert.equal(winners.length, 1);
      assert.equal(await contenders[0]?.holder(k), `H${winners[0]}`);
    });

    test('bad arguments are INVALID_INPUT', async () => {
      const l = await (await make())();
      await assert.rejects(l.acquire('', 'A', 100), isCode('INVALID_INPUT'));
      await assert.rejects(l.acquire(key(), '', 100), isCode('INVALID_INPUT'));
      await assert.rejects(l.acquire(key(), 'A', 0), isCode('INVALID_INPUT'));
      await assert.rejects(l.acquire(key(), 'A', 1.5), isCode('INVALID_INPUT'));
    });
  });
}

leaseSuite(
  'local',
  async () => {
    const shared = new LocalFencedLease();
    return async () => shared;
  },
  false,
);

const redisSkip = skipUnlessService('redis');
// Each handle is its own connection, as separate coordinator processes would have.
leaseSuite('redis', async () => async () => new RedisLease(await client()), redisSkip);

test('redis lease: Redis down → typed error; restarted empty → the holder re-acquires with a larger token', {
  skip: redisSkip,
}, async () => {
  const r = await getRedis();
  const lease = new RedisLease(await client());
  const before = await lease.acquire('restart-task', 'A', 10_000);
  assert.ok(before);
  await r.kill();
  await assert.rejects(lease.acquire('restart-task', 'A', 10_000), isCode('BACKEND_UNAVAILABLE'));
  await r.start();
  // The client reconnects in the background; retry for up to 5 s as a coordinator's renew loop would.
  let after: Awaited<ReturnType<RedisLease['acquire']>> = null;
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    try {
      after = await lease.acquire('restart-task', 'A', 10_000);
      break;
    } catch (err) {
      assert.ok(isCode('BACKEND_UNAVAILABLE')(err));
      await sleep(50);
    }
  }
  assert.ok(after, 'lease reacquired after restart');
  // The restarted Redis lost the counter; tokens still increase (the counter restarts at server time in µs).
  assert.ok(after.fencingToken > before.fencingToken, `${after.fencingToken} > ${before.fencingToken}`);
  const other = new RedisLease(await client());
  assert.equal(await other.acquire('restart-task', 'B', 10_000), null);
});
