/**
 * Journal appends in fold order. The Storage contract gives concurrent appends seqs in call
 * order, so the coordinator issues each append as soon as it folded the update, without waiting
 * for the previous one: the backend commits the appends of one event-loop turn together (group
 * commit) and each caller still resolves only once its own entry is durable.
 */
import type { AppendResult, JournalEntryInput, Storage } from './storage/types.ts';

export class JournalWriter {
  private readonly inFlight = new Set<Promise<AppendResult>>();

  constructor(private readonly storage: Storage) {}

  append(entry: JournalEntryInput): Promise<AppendResult> {
    const pending = this.storage.appendAccepted(entry);
    this.inFlight.add(pending);
    const forget = () => this.inFlight.delete(pending);
    pending.then(forget, forget);
    return pending;
  }

  /** Resolves once every append issued so far has succeeded or failed. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }
}
