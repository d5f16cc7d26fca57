/**
 * Journal appends in fold order. When the storage offers `appendAcceptedBatch` (one transaction,
 * one fsync for many entries), every append queued in one event-loop tick goes out as one batch
 * (group commit): each caller still resolves only once its entry is durable. Otherwise appends run
 * one after another. Batches run strictly in order, and after a failed one every later append
 * fails too until `reset`, so the journal never gets a gap the in-memory model does not have.
 */
import type { AppendResult, JournalEntryInput, Storage } from './storage/types.ts';

export interface BatchAppendStorage {
  /** Appends entries in order in one transaction; results in the same order. */
  appendAcceptedBatch(entries: readonly JournalEntryInput[]): Promise<AppendResult[]>;
}

export function supportsBatchAppend(storage: Storage): storage is Storage & BatchAppendStorage {
  return typeof (storage as Partial<BatchAppendStorage>).appendAcceptedBatch === 'function';
}

interface Pending {
  readonly entry: JournalEntryInput;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (error: unknown) => void;
}

export class JournalWriter {
  private chain: Promise<unknown> = Promise.resolve();
  private queue: Pending[] = [];
  private flushScheduled = false;

  constructor(private readonly storage: Storage) {}

  append(entry: JournalEntryInput): Promise<AppendResult> {
    const storage = this.storage;
    if (!supportsBatchAppend(storage)) {
      const next = this.chain.then(() => storage.appendAccepted(entry));
      this.chain = next;
      return next;
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush(storage));
      }
    });
  }

  private flush(storage: Storage & BatchAppendStorage): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    const next = this.chain.then(() => storage.appendAcceptedBatch(batch.map((p) => p.entry)));
    this.chain = next;
    next.then(
      (results) => {
        batch.forEach((p, i) => {
          const result = results[i];
          if (result === undefined)
            p.reject(new Error(`batch append returned ${results.length} of ${batch.length} results`));
          else p.resolve(result);
        });
      },
      (error: unknown) => {
        for (const p of batch) p.reject(error);
      },
    );
  }

  /** Resolves once every append issued so far has succeeded or failed. */
  async settled(): Promise<void> {
    while (this.queue.length > 0 || this.flushScheduled) await new Promise((r) => setImmediate(r));
    await this.chain.catch(() => {});
  }

  /** Forgets a failure (after the coordinator rebuilt its state from storage). */
  reset(): void {
    this.chain = Promise.resolve();
  }
}
