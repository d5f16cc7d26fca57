/**
 * Refused uploads by reason, shared by every process serving a task: each process counts the
 * uploads it refuses when they arrive (bad shape, NaN, norm bound, stale, finished task...) and adds
 * them to the storage's running counts (`Storage.addRejections`) in the background, so the leader's
 * dashboard shows what its aggregator processes refused too, and the counts outlive restarts.
 *
 * Refusals found when the coordinator folds its journal are not counted here: every replay of the
 * journal finds them again, so they stay in the coordinator's memory (TaskCoordinator.counts).
 */
import type { Storage } from './storage/types.ts';

/** How long counts may wait before they are added to the storage. */
const FLUSH_MS = 1000;

export class RejectionTally {
  /** Counted here and not yet added to the storage. */
  private pending: Record<string, number> = {};
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly storage: Storage,
    private readonly taskId: string,
    private readonly flushMs = FLUSH_MS,
  ) {}

  count(reason: string): void {
    this.pending[reason] = (this.pending[reason] ?? 0) + 1;
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.flush();
      }, this.flushMs);
      this.timer.unref();
    }
  }

  /** Adds the pending counts to the storage; on failure they stay pending for the next try. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      try {
        while (Object.keys(this.pending).length > 0) {
          const batch = this.pending;
          this.pending = {};
          try {
            await this.storage.addRejections(this.taskId, batch);
          } catch {
            for (const [reason, n] of Object.entries(batch))
              this.pending[reason] = (this.pending[reason] ?? 0) + n;
            return;
          }
        }
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  /** Every process's stored counts plus this one's pending ones; this process's alone if the
   *  storage cannot be read. */
  async totals(): Promise<Record<string, number>> {
    let stored: Record<string, number> = {};
    // A batch on its way to the storage is in neither place: wait until it landed (or came back).
    if (this.flushing !== null) await this.flushing;
    try {
      stored = await this.storage.rejections(this.taskId);
    } catch {
      // Monitoring: show what this process knows rather than fail the status page.
    }
    return mergeCounts(stored, this.pending);
  }

  /** Stops the timer and adds what is pending (best effort). */
  async close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
  }
}

/** Reason-by-reason sum of count maps. */
export function mergeCounts(
  ...maps: ReadonlyArray<Readonly<Record<string, number>>>
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of maps) for (const [reason, n] of Object.entries(m)) out[reason] = (out[reason] ?? 0) + n;
  return out;
}
