/**
 * Journal appends in fold order. The Storage contract gives concurrent appends seqs in call
 * order, so the coordinator issues each append as soon as it folded the update, without waiting
 * for the previous one: the backend commits the appends of one event-loop turn together (group
 * commit) and each caller still resolves only once its own entry is durable.
 */
import type { FoldInput } from './coordinator.ts';
import type { UpdateResponse } from './protocol.ts';
import type { AppendResult, JournalEntryInput, Storage } from './storage/types.ts';

/**
 * The journal entry of an accepted update and the answer it got. `deltaStable`: every caller awaits
 * the append before it returns, and the update's owner (the update route) reuses the delta's memory
 * only after that (see bodies.ts), so the storage may read the delta in place.
 */
export function journalEntry(taskId: string, input: FoldInput, response: UpdateResponse): JournalEntryInput {
  return {
    deltaStable: true,
    taskId,
    idempotencyKey: input.idempotencyKey,
    ...(input.keyExpiresAt === undefined ? {} : { keyExpiresAt: input.keyExpiresAt }),
    deviceId: input.deviceId,
    assignmentId: input.assignmentId,
    baseVersion: input.baseVersion,
    numExamples: input.numExamples,
    delta: input.delta,
    response,
    acceptedAt: Date.now(),
  };
}

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
