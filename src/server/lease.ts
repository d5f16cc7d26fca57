/**
 * Leases: exactly one coordinator acts for a task at a time. A holder acquires a lease with a TTL
 * and renews it well before expiry; when a renewal fails it must stop acting at once. The local
 * lease serves one process; a shared backend (Redis, src/server/scaleout) implements the same
 * interface for several processes and machines.
 */

export interface Lease {
  /** Acquires `key` for `holder`, or extends it when `holder` already owns it; true while owned. */
  tryAcquire(key: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up if `holder` owns it. */
  release(key: string, holder: string): Promise<void>;
}

/** In-process leases (the embedded server: every role in one process). */
export class LocalLease implements Lease {
  private readonly held = new Map<string, { holder: string; expiresAt: number }>();
  constructor(private readonly now: () => number = Date.now) {}

  async tryAcquire(key: string, holder: string, ttlMs: number): Promise<boolean> {
    const t = this.now();
    const current = this.held.get(key);
    if (current !== undefined && current.holder !== holder && current.expiresAt > t) return false;
    this.held.set(key, { holder, expiresAt: t + ttlMs });
    return true;
  }

  async release(key: string, holder: string): Promise<void> {
    if (this.held.get(key)?.holder === holder) this.held.delete(key);
  }
}
