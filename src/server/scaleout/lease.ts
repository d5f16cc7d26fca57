/**
 * Coordinator leases with fencing tokens. At most one holder owns a key at a time; a holder
 * renews before the TTL runs out and stops acting as soon as a renewal fails. Each fresh
 * acquisition gets a fencing token larger than every earlier one of that key, so storage can refuse
 * writes from a holder that lost its lease without noticing: the new holder calls
 * `storage.fence(taskId, token)` before recovering and passes `fencingToken` with its appends and
 * checkpoints (src/server/storage/types.ts).
 *
 * Both classes also satisfy the server's `Lease` (src/server/lease.ts): `tryAcquire` = acquire or
 * renew, true while owned.
 */
import type { Lease } from '../lease.ts';
import { invalidInput, requirePositiveInt, requireString } from './errors.ts';
import { mapRedisError, type RedisClient, Script } from './redis.ts';

export interface LeaseGrant {
  /** Increases with every fresh acquisition of the key; unchanged by renewals. */
  readonly fencingToken: number;
}

export interface FencedLease extends Lease {
  /** Acquires `key` for `holder`, or renews it if `holder` owns it; null when another holder owns it. */
  acquire(key: string, holder: string, ttlMs: number): Promise<LeaseGrant | null>;
  /** The current owner, or null. */
  holder(key: string): Promise<string | null>;
}

function check(key: string, holder: string, ttlMs: number): void {
  requireString(key, 'lease key');
  requireString(holder, 'lease holder');
  requirePositiveInt(ttlMs, 'lease ttlMs');
}

/** In-process leases for the embedded single-process server. */
export class LocalFencedLease implements FencedLease {
  private readonly held = new Map<string, { holder: string; token: number; expiresAt: number }>();
  private readonly fences = new Map<string, number>();
  constructor(private readonly now: () => number = Date.now) {}

  async acquire(key: string, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    check(key, holder, ttlMs);
    const t = this.now();
    const cur = this.held.get(key);
    if (cur && cur.expiresAt > t) {
      if (cur.holder !== holder) return null;
      cur.expiresAt = t + ttlMs;
      return { fencingToken: cur.token };
    }
    const token = (this.fences.get(key) ?? 0) + 1;
    this.fences.set(key, token);
    this.held.set(key, { holder, token, expiresAt: t + ttlMs });
    return { fencingToken: token };
  }

  async tryAcquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    return (await this.acquire(key, holder, ttlMs)) !== null;
  }

  async release(key: string, holder: string): Promise<void> {
    if (this.held.get(key)?.holder === holder) this.held.delete(key);
  }

  async holder(key: string): Promise<string | null> {
    const cur = this.held.get(key);
    return cur && cur.expiresAt > this.now() ? cur.holder : null;
  }
}

// The lease value is "<token>|<holder>"; the fence counter lives in its own key that never expires.
// A missing counter (first use, or Redis restarted empty) starts at the server's time in µs, so
// tokens keep increasing across a restart that lost the counter (1 acquisition per µs at most).
const ACQUIRE = new Script(
  `
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if string.sub(cur, sep + 1) ~= ARGV[1] then return false end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(cur, 1, sep - 1))
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.sub('000000' .. t[2], -6))
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', token) .. '|' .. ARGV[1], 'PX', ARGV[2])
return token
`,
  2,
);

const RELEASE = new Script(
  `
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, string.find(cur, '|', 1, true) + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`,
  1,
);

/** Leases shared by every process that talks to one Redis (SET NX PX semantics, Lua-checked). */
export class RedisLease implements FencedLease {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix = 'orchard:lease:',
  ) {}

  async acquire(key: string, holder: string, ttlMs: number): Promise<LeaseGrant | null> {
    check(key, holder, ttlMs);
    if (holder.includes('|')) invalidInput('lease holder may not contain "|"');
    const token = await ACQUIRE.run(
      this.redis,
      [this.prefix + key, `${this.prefix + key}:fence`],
      [holder, ttlMs],
    );
    return token === null ? null : { fencingToken: Number(token) };
  }

  async tryAcquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    return (await this.acquire(key, holder, ttlMs)) !== null;
  }

  async release(key: string, holder: string): Promise<void> {
    requireString(key, 'lease key');
    requireString(holder, 'lease holder');
    await RELEASE.run(this.redis, [this.prefix + key], [holder]);
  }

  async holder(key: string): Promise<string | null> {
    requireString(key, 'lease key');
    let cur: string | null;
    try {
      cur = await this.redis.get(this.prefix + key);
    } catch (err) {
      throw mapRedisError(err);
    }
    if (cur === null) return null;
    return cur.slice(cur.indexOf('|') + 1);
  }
}
