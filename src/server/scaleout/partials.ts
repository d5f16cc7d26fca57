/**
 * Partial-aggregate exchange: aggregator processes push partial sums of the updates they accepted;
 * the task's leader (the coordinator holding the lease) pulls them, folds each into the model once,
 * and acknowledges it after the result is durable.
 *
 * Delivery is at least once: a partial pulled by a leader that crashed before acknowledging is
 * delivered again (to whoever pulls after `claimIdleMs`, or at once after `takeOver`), and an
 * aggregator that retries a push whose answer it lost may enqueue the same partial twice.
 * Application is exactly once because the leader skips partial ids it already folded: it keeps
 * those ids with its durable state (see `PartialFolder`), and acknowledges only after saving it.
 *
 * Redis streams back the shared exchange (one stream and consumer group per task). If Redis loses
 * its data (restarted without persistence), `pull` throws ScaleoutError('STATE_LOST') once: the
 * partials that were queued are gone, and the leader must rebuild the missing effect from the
 * storage journal (the journal, not Redis, is the record of accepted updates). With
 * `appendonly yes` a restart keeps the queue and the leader simply continues.
 */
import { randomUUID } from 'node:crypto';
import { invalidInput, requirePositiveInt, requireString, ScaleoutError } from './errors.ts';
import { mapRedisError, type RedisClient } from './redis.ts';

export interface PartialAggregate {
  /** Unique per partial (e.g. `${aggregatorId}:${counter}`); the leader dedupes on it. */
  readonly id: string;
  readonly taskId: string;
  readonly aggregatorId: string;
  /** Σ wᵢ·Δᵢ over the covered updates. */
  readonly sum: Float32Array;
  /** Σ wᵢ. */
  readonly weight: number;
  /** Number of updates covered. */
  readonly count: number;
  /** Idempotency keys of the covered updates. */
  readonly keys: readonly string[];
  /** Journal seqs of the covered updates. */
  readonly seqs: readonly number[];
}

export interface DeliveredPartial {
  /** Opaque handle for `ack`. */
  readonly deliveryId: string;
  readonly partial: PartialAggregate;
}

export interface PartialExchange {
  push(partial: PartialAggregate): Promise<void>;
  /**
   * Up to `max` unacknowledged partials for `leaderId`, oldest first: first those another
   * (crashed) leader took more than `claimIdleMs` ago, then new ones. Waits up to `waitMs` for one.
   */
  pull(taskId: string, leaderId: string, max: number, waitMs?: number): Promise<DeliveredPartial[]>;
  /** Marks partials done; they are never delivered again. Unknown ids are ignored. */
  ack(taskId: string, deliveryIds: readonly string[]): Promise<void>;
  /**
   * A new leader (just won the lease) takes every partial an earlier leader pulled and never
   * acknowledged, at once. It folds them (skipping ids it already has) and acknowledges them.
   */
  takeOver(taskId: string, leaderId: string): Promise<DeliveredPartial[]>;
}

export function validatePartial(p: PartialAggregate): void {
  requireString(p.id, 'partial id');
  requireString(p.taskId, 'partial taskId');
  requireString(p.aggregatorId, 'partial aggregatorId');
  if (!(p.sum instanceof Float32Array)) invalidInput('partial sum must be a Float32Array');
  if (typeof p.weight !== 'number' || !Number.isFinite(p.weight) || p.weight < 0) {
    invalidInput('partial weight must be a finite number ≥ 0');
  }
  if (!Number.isSafeInteger(p.count) || p.count < 0) invalidInput('partial count must be an integer ≥ 0');
  if (!Array.isArray(p.keys) || !p.keys.every((k) => typeof k === 'string'))
    invalidInput('partial keys: strings');
  if (!Array.isArray(p.seqs) || !p.seqs.every((s) => Number.isSafeInteger(s) && s > 0)) {
    invalidInput('partial seqs: positive integers');
  }
  for (let i = 0; i < p.sum.length; i++) {
    if (!Number.isFinite(p.sum[i])) invalidInput(`partial sum[${i}] is not finite`);
  }
}

function copyPartial(p: PartialAggregate): PartialAggregate {
  return { ...p, sum: Float32Array.from(p.sum), keys: [...p.keys], seqs: [...p.seqs] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** In-process exchange for the embedded server; same delivery rules as the Redis one. */
export class LocalPartialExchange implements PartialExchange {
  private nextId = 1;
  private readonly queues = new Map<string, Array<{ deliveryId: string; partial: PartialAggregate }>>();
  private readonly pending = new Map<
    string,
    Map<string, { partial: PartialAggregate; consumer: string; deliveredAt: number }>
  >();

  constructor(
    private readonly claimIdleMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  private queue(taskId: string) {
    let q = this.queues.get(taskId);
    if (!q) {
      q = [];
      this.queues.set(taskId, q);
    }
    return q;
  }

  private pendingOf(taskId: string) {
    let p = this.pending.get(taskId);
    if (!p) {
      p = new Map();
      this.pending.set(taskId, p);
    }
    return p;
  }

  async push(partial: PartialAggregate): Promise<void> {
    validatePartial(partial);
    this.queue(partial.taskId).push({ deliveryId: String(this.nextId++), partial: copyPartial(partial) });
  }

  private claim(taskId: string, leaderId: string, max: number, minIdleMs: number): DeliveredPartial[] {
    const out: DeliveredPartial[] = [];
    const t = this.now();
    for (const [deliveryId, p] of this.pendingOf(taskId)) {
      if (out.length >= max) break;
      if (t - p.deliveredAt < minIdleMs) continue;
      p.consumer = leaderId;
      p.deliveredAt = t;
      out.push({ deliveryId, partial: copyPartial(p.partial) });
    }
    return out;
  }

  async pull(taskId: string, leaderId: string, max: number, waitMs = 0): Promise<DeliveredPartial[]> {
    requireString(taskId, 'taskId');
    requireString(leaderId, 'leaderId');
    requirePositiveInt(max, 'max');
    const until = this.now() + waitMs;
    for (;;) {
      const out = this.claim(taskId, leaderId, max, this.claimIdleMs);
      const q = this.queue(taskId);
      while (out.length < max && q.length > 0) {
        const next = q.shift();
        if (!next) break;
        this.pendingOf(taskId).set(next.deliveryId, {
          partial: next.partial,
          consumer: leaderId,
          deliveredAt: this.now(),
        });
        out.push({ deliveryId: next.deliveryId, partial: copyPartial(next.partial) });
      }
      if (out.length > 0 || this.now() >= until) return out;
      await sleep(Math.min(20, Math.max(1, until - this.now())));
    }
  }

  async ack(taskId: string, deliveryIds: readonly string[]): Promise<void> {
    const p = this.pendingOf(taskId);
    for (const id of deliveryIds) p.delete(id);
  }

  async takeOver(taskId: string, leaderId: string): Promise<DeliveredPartial[]> {
    requireString(taskId, 'taskId');
    requireString(leaderId, 'leaderId');
    return this.claim(taskId, leaderId, Number.MAX_SAFE_INTEGER, 0);
  }
}

const GROUP = 'leaders';

/** Binary wire form: field `m` = JSON metadata, field `s` = raw float32 bytes of the sum. */
function encodeFields(p: PartialAggregate): Array<string | Buffer> {
  const meta = JSON.stringify({
    id: p.id,
    taskId: p.taskId,
    aggregatorId: p.aggregatorId,
    weight: p.weight,
    count: p.count,
    keys: p.keys,
    seqs: p.seqs,
  });
  return ['m', meta, 's', Buffer.from(new Uint8Array(p.sum.buffer, p.sum.byteOffset, p.sum.byteLength))];
}

function decodeFields(fields: Buffer[]): PartialAggregate {
  let meta: Record<string, unknown> | null = null;
  let sumBytes: Buffer | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]?.toString();
    if (name === 'm') meta = JSON.parse(String(fields[i + 1])) as Record<string, unknown>;
    else if (name === 's') sumBytes = fields[i + 1] ?? null;
  }
  if (!meta || !sumBytes || sumBytes.byteLength % 4 !== 0) {
    throw new ScaleoutError('STATE_LOST', 'a malformed partial was found in the exchange stream');
  }
  const sum = new Float32Array(sumBytes.byteLength / 4);
  new Uint8Array(sum.buffer).set(sumBytes);
  return {
    id: String(meta.id),
    taskId: String(meta.taskId),
    aggregatorId: String(meta.aggregatorId),
    weight: Number(meta.weight),
    count: Number(meta.count),
    keys: meta.keys as string[],
    seqs: meta.seqs as number[],
    sum,
  };
}

type StreamEntry = [Buffer, Buffer[] | null];

function toDelivered(entries: StreamEntry[]): DeliveredPartial[] {
  const out: DeliveredPartial[] = [];
  for (const [id, fields] of entries) {
    if (fields) out.push({ deliveryId: id.toString(), partial: decodeFields(fields) });
  }
  return out;
}

/** Exchange over one Redis: a stream per task, consumed by the `leaders` group. */
export class RedisPartialExchange implements PartialExchange {
  /** The epoch each task's stream had when this process last saw it (detects Redis data loss). */
  private readonly epochs = new Map<string, string>();

  constructor(
    private readonly redis: RedisClient,
    private readonly claimIdleMs = 10_000,
    private readonly prefix = 'orchard:partials:',
  ) {}

  private streamKey(taskId: string): string {
    return `${this.prefix}${taskId}`;
  }

  private async call(command: string, args: Array<string | number | Buffer>): Promise<unknown> {
    try {
      return await this.redis.callBuffer(command, args);
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  async push(partial: PartialAggregate): Promise<void> {
    validatePartial(partial);
    await this.call('XADD', [this.streamKey(partial.taskId), '*', ...encodeFields(partial)]);
  }

  /**
   * Makes sure the stream's consumer group and epoch marker exist. If the marker vanished since
   * this process last saw it, Redis lost its data: recreate both and report STATE_LOST once.
   */
  private async ensureGroup(taskId: string): Promise<void> {
    const key = this.streamKey(taskId);
    const epochKey = `${key}:epoch`;
    const fresh = randomUUID();
    const set = await this.call('SET', [epochKey, fresh, 'NX']);
    const current = set === null ? String(await this.call('GET', [epochKey])) : fresh;
    const known = this.epochs.get(taskId);
    if (known === current) return;
    try {
      // From id 0: partials pushed before the group existed (e.g. right after a restart) count too.
      await this.call('XGROUP', ['CREATE', key, GROUP, '0', 'MKSTREAM']);
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.epochs.set(taskId, current);
    if (known !== undefined) {
      throw new ScaleoutError(
        'STATE_LOST',
        `redis lost the partial-aggregate queue of task ${taskId} (restarted without persistence); ` +
          'rebuild unfolded updates from the storage journal',
      );
    }
  }

  private async claim(
    taskId: string,
    leaderId: string,
    max: number,
    minIdleMs: number,
  ): Promise<DeliveredPartial[]> {
    const reply = (await this.call('XAUTOCLAIM', [
      this.streamKey(taskId),
      GROUP,
      leaderId,
      minIdleMs,
      '0-0',
      'COUNT',
      max,
    ])) as [Buffer, StreamEntry[], unknown];
    return toDelivered(reply[1] ?? []);
  }

  private async readNew(taskId: string, leaderId: string, max: number): Promise<DeliveredPartial[]> {
    const reply = (await this.call('XREADGROUP', [
      'GROUP',
      GROUP,
      leaderId,
      'COUNT',
      max,
      'STREAMS',
      this.streamKey(taskId),
      '>',
    ])) as Array<[Buffer, StreamEntry[]]> | null;
    return reply?.[0] ? toDelivered(reply[0][1]) : [];
  }

  async pull(taskId: string, leaderId: string, max: number, waitMs = 0): Promise<DeliveredPartial[]> {
    requireString(taskId, 'taskId');
    requireString(leaderId, 'leaderId');
    requirePositiveInt(max, 'max');
    // Polling, not XREADGROUP BLOCK: a blocked connection would stall lease renewals sharing it.
    const until = Date.now() + waitMs;
    for (;;) {
      await this.ensureGroup(taskId);
      let out: DeliveredPartial[];
      try {
        out = await this.claim(taskId, leaderId, max, this.claimIdleMs);
        if (out.length < max) out = out.concat(await this.readNew(taskId, leaderId, max - out.length));
      } catch (err) {
        // The group vanished between the epoch check and the read: same as lost state.
        if (String((err as Error).message).includes('NOGROUP')) {
          this.epochs.set(taskId, 'lost');
          continue;
        }
        throw err;
      }
      if (out.length > 0 || Date.now() >= until) return out;
      await sleep(Math.min(25, Math.max(1, until - Date.now())));
    }
  }

  async ack(taskId: string, deliveryIds: readonly string[]): Promise<void> {
    requireString(taskId, 'taskId');
    if (deliveryIds.length === 0) return;
    const key = this.streamKey(taskId);
    try {
      // One MULTI: acknowledged partials also leave the stream, so it does not grow without bound.
      await this.redis
        .multi()
        .xack(key, GROUP, ...deliveryIds)
        .xdel(key, ...deliveryIds)
        .exec();
    } catch (err) {
      throw mapRedisError(err);
    }
  }

  async takeOver(taskId: string, leaderId: string): Promise<DeliveredPartial[]> {
    requireString(taskId, 'taskId');
    requireString(leaderId, 'leaderId');
    await this.ensureGroup(taskId);
    const out: DeliveredPartial[] = [];
    let start = '0-0';
    do {
      const reply = (await this.call('XAUTOCLAIM', [
        this.streamKey(taskId),
        GROUP,
        leaderId,
        0,
        start,
        'COUNT',
        100,
      ])) as [Buffer, StreamEntry[], unknown];
      out.push(...toDelivered(reply[1] ?? []));
      start = reply[0].toString();
    } while (start !== '0-0');
    return out;
  }
}

/**
 * The leader's side of exactly-once: folds delivered partials into a running sum, skipping ids it
 * folded before. `appliedIds` must be saved with the model (e.g. in the checkpoint state) before
 * the deliveries are acknowledged, and restored from there after a crash.
 */
export class PartialFolder {
  readonly sum: Float32Array;
  weight = 0;
  count = 0;
  readonly appliedIds: Set<string>;

  constructor(dim: number, appliedIds: Iterable<string> = []) {
    if (!Number.isSafeInteger(dim) || dim < 0) invalidInput('dim must be an integer ≥ 0');
    this.sum = new Float32Array(dim);
    this.appliedIds = new Set(appliedIds);
  }

  /** Folds the partials not seen before; returns those it folded (the others were duplicates). */
  fold(delivered: readonly DeliveredPartial[]): PartialAggregate[] {
    const folded: PartialAggregate[] = [];
    for (const { partial } of delivered) {
      if (this.appliedIds.has(partial.id)) continue;
      if (partial.sum.length !== this.sum.length) {
        invalidInput(`partial ${partial.id} has ${partial.sum.length} values, expected ${this.sum.length}`);
      }
      for (let i = 0; i < this.sum.length; i++) this.sum[i] = (this.sum[i] ?? 0) + (partial.sum[i] ?? 0);
      this.weight += partial.weight;
      this.count += partial.count;
      this.appliedIds.add(partial.id);
      folded.push(partial);
    }
    return folded;
  }
}
