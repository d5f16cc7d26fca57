/**
 * Admission counters shared by every selector process (Redis). Implements the server's
 * `AdmissionCounter` (src/server/admission.ts); the in-process counterpart is its
 * `LocalAdmissionCounter`, and one shared suite (admission.test.ts) runs against both.
 *
 * In-flight slots: one sorted set per task, member = slot (assignment) id, score = its deadline.
 * Expired members are dropped inside the same script that counts, so a client that crashed
 * mid-training frees its slot at its deadline without anyone releasing it; count-and-add is one
 * atomic script, so concurrent selectors never admit more than `limit`.
 * Rate limit: one key per device holding its last check-in time, expiring after the interval, so
 * Redis memory follows the active devices only.
 */
import type { AdmissionCounter } from '../admission.ts';
import { requireFinite, requireString } from './errors.ts';
import { mapRedisError, type RedisClient, Script } from './redis.ts';

const TRY_ACQUIRE = new Script(
  `
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
elseif redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
else
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
end
-- The set itself lapses after its last deadline.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1000)
return 1
`,
  1,
);

const TOUCH = new Script(
  `
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local last = redis.call('GET', KEYS[1])
if last and now - tonumber(last) < interval then
  return interval - (now - tonumber(last))
end
if interval > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', interval)
end
return 0
`,
  1,
);

export class RedisAdmission implements AdmissionCounter {
  constructor(
    private readonly redis: RedisClient,
    private readonly now: () => number = Date.now,
    private readonly prefix = 'orchard:admission:',
  ) {}

  async tryAcquire(taskId: string, slotId: string, limit: number, expiresAt: number): Promise<boolean> {
    requireString(taskId, 'taskId');
    requireString(slotId, 'slotId');
    requireFinite(limit, 'limit');
    requireFinite(expiresAt, 'expiresAt');
    const r = await TRY_ACQUIRE.run(
      this.redis,
      [`${this.prefix}inflight:${taskId}`],
      [this.now(), slotId, Math.floor(limit), expiresAt],
    );
    return r === 1;
  }

  /**
   * Best effort: while Redis is unreachable this resolves without freeing anything, and the slot
   * lapses at its deadline instead (callers fire-and-forget releases; a rejection would be unhandled).
   */
  async release(taskId: string, slotId: string): Promise<void> {
    requireString(taskId, 'taskId');
    requireString(slotId, 'slotId');
    try {
      await this.redis.zrem(`${this.prefix}inflight:${taskId}`, slotId);
    } catch {
      // The deadline frees the slot.
    }
  }

  async inFlight(taskId: string): Promise<number> {
    requireString(taskId, 'taskId');
    try {
      return await this.redis.zcount(`${this.prefix}inflight:${taskId}`, `(${this.now()}`, '+inf');
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  async touch(deviceId: string, minIntervalMs: number, now: number): Promise<number> {
    requireString(deviceId, 'deviceId');
    requireFinite(minIntervalMs, 'minIntervalMs');
    requireFinite(now, 'now');
    const wait = await TOUCH.run(
      this.redis,
      [`${this.prefix}checkin:${deviceId}`],
      [now, Math.ceil(minIntervalMs)],
    );
    return Number(wait);
  }
}
