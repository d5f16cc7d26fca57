import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freePort } from '../../testing/services.ts';
import { ScaleoutError } from './errors.ts';
import { connectRedis, redactRedis } from './redis.ts';

test('connectRedis: nothing listening → BACKEND_UNAVAILABLE by the deadline, password redacted', async () => {
  const port = await freePort();
  const t0 = Date.now();
  await assert.rejects(
    connectRedis(`redis://:hunter2@127.0.0.1:${port}`, { connectTimeoutMs: 800 }),
    (e: unknown) =>
      e instanceof ScaleoutError && e.code === 'BACKEND_UNAVAILABLE' && !e.message.includes('hunter2'),
  );
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  assert.equal(redactRedis('redis://user:pw@h:6379/0'), 'redis://user:***@h:6379/0');
});
