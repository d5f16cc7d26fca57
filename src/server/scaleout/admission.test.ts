import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { skipUnlessService } from '../../testing/services.ts';
import { type AdmissionCounter, LocalAdmissionCounter } from '../admission.ts';
import { RedisAdmission } from './admission.ts';
import { ScaleoutError } from './errors.ts';
import { eventually, sharedTestRedis, sleep } from './testkit.ts';

const redis = sharedTestRedis();
const redisSkip = skipUnlessService('redis');

/**
 * One suite for the server's in-process counter and the Redis one. `make` returns a factory of
 * handles on one shared counter space (for Redis: separate connections, like separate selectors).
 */
function admissionSuite(
  name: string,
  make: () => Promise<() => Promise<AdmissionCounter>>,
  skip: string | false,
) {
  describe(`admission: ${name}`, { skip }, () => {
    let n = 0;
    const task = () => `task-${name}-${++n}`;

    test('concurrent selectors never admit more than the limit; release frees a slot', async () => {
      const handle = await make();
      const selectors = await Promise.all([handle(), handle(), handle()]);
      const t = task();
      const deadline = Date.now() + 60_000;
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => selectors[i % 3]?.tryAcquire(t, `slot-${i}`, 10, deadline)),
      );
      assert.equal(results.filter(Boolean).length, 10);
      assert.equal(await selectors[0]?.inFlight(t), 10);
      const held = results.findIndex(Boolean);
      await selectors[1]?.release(t, `slot-${held}`);
      assert.equal(await selectors[2]?.inFlight(t), 9);
      assert.equal(await selectors[2]?.tryAcquire(t, 'late', 10, deadline), true);
      assert.equal(await selectors[0]?.tryAcquire(t, 'later', 10, deadline), false);
      await selectors[0]?.release(t, 'never-held');
      assert.equal(await selectors[0]?.inFlight(t), 10);
      assert.equal(await selectors[0]?.inFlight(task()), 0, 'tasks are separate');
    });

    test('a slot nobody releases (crashed client) lapses at its deadline', async () => {
      const a = await (await make())();
      const t = task();
      assert.equal(await a.tryAcquire(t, 'crashed', 1, Date.now() + 60), true);
      assert.equal(await a.tryAcquire(t, 'next', 1, Date.now() + 60_000), false);
      await sleep(100);
      assert.equal(await a.inFlight(t), 0);
      assert.equal(await a.tryAcquire(t, 'next', 1, Date.now() + 60_000), true);
    });

    test('per-device rate limit: the wait left, shared by every selector', async () => {
      const handle = await make();
      const a = await handle();
      const b = await handle();
      const dev = `device-${name}-${++n}`;
      const t0 = Date.now();
      assert.equal(await a.touch(dev, 10_000, t0), 0);
      assert.equal(await b.touch(dev, 10_000, t0 + 2500), 7500);
      // A refused check-in records nothing: the wait counts from the accepted one.
      assert.equal(await a.touch(dev, 10_000, t0 + 4000), 6000);
      assert.equal(await b.touch(dev, 10_000, t0 + 10_000), 0);
      assert.equal(await a.touch(dev, 10_000, t0 + 10_001), 9999);
      assert.equal(await a.touch(`${dev}-other`, 10_000, t0 + 10_001), 0);
    });
  });
}

admissionSuite(
  'local (src/server/admission.ts)',
  async () => {
    const shared = new LocalAdmissionCounter();
    return async () => shared;
  },
  false,
);
admissionSuite('redis', async () => async () => new RedisAdmission(await redis.client()), redisSkip);

test('redis admission: Redis down → BACKEND_UNAVAILABLE; after a restart counting works again', {
  skip: redisSkip,
}, async () => {
  const r = await redis.get();
  const a = new RedisAdmission(await redis.client());
  assert.equal(await a.tryAcquire('restart', 's1', 5, Date.now() + 60_000), true);
  await r.kill();
  const down = (e: unknown) => e instanceof ScaleoutError && e.code === 'BACKEND_UNAVAILABLE';
  await assert.rejects(a.tryAcquire('restart', 's2', 5, Date.now() + 60_000), down);
  await assert.rejects(a.inFlight('restart'), down);
  await assert.rejects(a.touch('d', 1000, Date.now()), down);
  // Releases are fire-and-forget in the server: they must not reject (the slot lapses instead).
  await a.release('restart', 's1');
  await r.start();
  // Restarted empty: the old slot is gone (it would have lapsed at its deadline anyway).
  assert.equal(await eventually(() => a.inFlight('restart')), 0);
  assert.equal(await a.tryAcquire('restart', 's2', 5, Date.now() + 60_000), true);
  assert.equal(await a.inFlight('restart'), 1);
});

test('redis admission: bad arguments are INVALID_INPUT and send nothing', { skip: redisSkip }, async () => {
  const a = new RedisAdmission(await redis.client());
  const bad = (e: unknown) => e instanceof ScaleoutError && e.code === 'INVALID_INPUT';
  await assert.rejects(a.tryAcquire('', 's', 1, 1), bad);
  await assert.rejects(a.tryAcquire('t', 's', Number.NaN, 1), bad);
  await assert.rejects(a.touch('d', Number.POSITIVE_INFINITY, 1), bad);
});
