/**
 * Admission counters: how many clients train a task right now (target concurrency) and when each
 * device last checked in (per-device rate limit). The selector keeps no other state, so several
 * selector processes share one counter backend (Redis in src/server/scaleout); the local one
 * serves a single process.
 */

export interface AdmissionCounter {
  /**
   * Takes slot `slotId` of `taskId` if fewer than `limit` unexpired slots are held; the slot lapses
   * by itself at `expiresAt` (ms since epoch) if never released. True when taken.
   */
  tryAcquire(taskId: string, slotId: string, limit: number, expiresAt: number): Promise<boolean>;
  /** Frees a slot (its update arrived or was refused); unknown slots are ignored. */
  release(taskId: string, slotId: string): Promise<void>;
  /** Unexpired slots of a task. */
  inFlight(taskId: string): Promise<number>;
  /**
   * Rate limit: when `deviceId` last checked in less than `minIntervalMs` ago, the ms it must still
   * wait (nothing recorded); otherwise records `now` and returns 0.
   */
  touch(deviceId: string, minIntervalMs: number, now: number): Promise<number>;
}

export class LocalAdmissionCounter implements AdmissionCounter {
  private readonly slots = new Map<string, Map<string, number>>();
  private readonly lastCheckin = new Map<string, number>();
  private lastSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  private readonly lastSlotSweep = new Map<string, number>();

  /** The task's slots, with lapsed ones dropped. Sweeps run at most every 100 ms (a full scan),
   *  so a slot may outlive its deadline by that much: admission errs on the cautious side. */
  private live(taskId: string): Map<string, number> {
    let slots = this.slots.get(taskId);
    if (slots === undefined) {
      slots = new Map();
      this.slots.set(taskId, slots);
    }
    const t = this.now();
    if (t - (this.lastSlotSweep.get(taskId) ?? Number.NEGATIVE_INFINITY) >= 100) {
      this.lastSlotSweep.set(taskId, t);
      for (const [id, expiresAt] of slots) if (expiresAt <= t) slots.delete(id);
    }
    return slots;
  }

  async tryAcquire(taskId: string, slotId: string, limit: number, expiresAt: number): Promise<boolean> {
    const slots = this.live(taskId);
    if (slots.size >= limit) return false;
    slots.set(slotId, expiresAt);
    return true;
  }

  async release(taskId: string, slotId: string): Promise<void> {
    this.slots.get(taskId)?.delete(slotId);
  }

  async inFlight(taskId: string): Promise<number> {
    return this.live(taskId).size;
  }

  async touch(deviceId: string, minIntervalMs: number, now: number): Promise<number> {
    this.sweepCheckins(now, minIntervalMs);
    const last = this.lastCheckin.get(deviceId);
    if (last !== undefined && now - last < minIntervalMs) return minIntervalMs - (now - last);
    this.lastCheckin.set(deviceId, now);
    return 0;
  }

  /** Forgets devices whose last check-in no longer limits them, so memory follows active devices. */
  private sweepCheckins(now: number, minIntervalMs: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    const horizon = Math.max(minIntervalMs, 60_000);
    for (const [id, at] of this.lastCheckin) if (now - at >= horizon) this.lastCheckin.delete(id);
  }
}
