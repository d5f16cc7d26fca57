/** Test support: one throwaway redis-server per test file, started on first use, and its clients. */
import { after } from 'node:test';
import { type RedisInstance, startRedis } from '../../testing/services.ts';
import { connectRedis, type RedisClient } from './redis.ts';

export function sharedTestRedis() {
  let redis: Promise<RedisInstance> | null = null;
  const clients: RedisClient[] = [];
  const get = () => {
    redis ??= startRedis();
    return redis;
  };
  after(async () => {
    for (const c of clients) c.disconnect();
    if (redis) await (await redis).stop();
  });
  return {
    get,
    /** A new connection (a separate process would have its own). */
    async client(): Promise<RedisClient> {
      const c = await connectRedis((await get()).url);
      clients.push(c);
      return c;
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` while it throws, for up to `ms` (a client reconnecting after a Redis restart). */
export async function eventually<T>(fn: () => Promise<T>, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(50);
    }
  }
}
