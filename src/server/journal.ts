/**
 * Journal appends in fold order. The Storage contract gives concurrent appends seqs in call
 * order, so the coordinator issues each append as soon as it folded the update, without waiting
 * for the previous one: the backend commits the appends of one event-loop turn together (group
 * commit) and each caller still resolves only once its own entry is durable.
 */
import type { FoldInput } from './coordinator.ts';
import type { UpdateResponse } from './protocol.ts';
import type {
  AppendResult,
  FoldedCommit,
  FoldedCommitResult,
  FoldedEntryInput,
  JournalEntryInput,
  Storage,
} from './storage/types.ts';
import { StorageError } from './storage/types.ts';

/**
 * The journal entry of an accepted update and the answer it got. `deltaStable`: every caller awaits
 * the append before it returns, and the update's owner (the update route) reuses the delta's memory
 * only after that (see bodies.ts), so the storage may read the delta in place.
 */
export function journalEntry(taskId: string, input: FoldInput, response: UpdateResponse): JournalEntryInput {
  return { deltaStable: true, taskId, ...foldedEntry(input, response), delta: input.delta };
}

/** An accepted update as a folded commit records it: its key and answer, no delta. */
export function foldedEntry(input: FoldInput, response: UpdateResponse): FoldedEntryInput {
  return {
    idempotencyKey: input.idempotencyKey,
    ...(input.keyExpiresAt === undefined ? {} : { keyExpiresAt: input.keyExpiresAt }),
    deviceId: input.deviceId,
    assignmentId: input.assignmentId,
    baseVersion: input.baseVersion,
    numExamples: input.numExamples,
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

interface FoldedWaiter {
  readonly entry: FoldedEntryInput;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Group commits of a coordinator that stores its state instead of its updates' deltas (see
 * `Storage.commitFolded`): each update is queued right after its fold, in fold order, and one
 * commit at a time stores the state as `capture` gives it when the commit starts (it then includes
 * the fold of every update queued so far) with the queued updates' keys and answers. The updates
 * folded while one commit is written go together in the next, so the 400 kB state is written once
 * per group instead of one 400 kB payload per update; each update still resolves only once the
 * state that includes it is durable.
 */
export class FoldedCommitter {
  private waiting: FoldedWaiter[] = [];
  private storing: Promise<void> | null = null;
  /** Set when a commit failed: the in-memory state holds folds that were not stored; see `reset`. */
  private broken = false;

  /**
   * `capture`: the state to store now, or null when the coordinator has no state to store (it is
   * rebuilding from storage); then the queued updates are refused, since their folds went with it.
   */
  constructor(
    private readonly storage: Storage,
    private readonly capture: () => Omit<FoldedCommit, 'entries'> | null,
  ) {}

  append(entry: FoldedEntryInput): Promise<AppendResult> {
    if (this.broken) return Promise.reject(discarded());
    return new Promise<AppendResult>((resolve, reject) => {
      this.waiting.push({ entry, resolve, reject });
      if (this.storing === null) this.storeNext();
    });
  }

  /** Resolves once no commit is in flight (it succeeded or failed). */
  async settled(): Promise<void> {
    while (this.storing !== null) await this.storing;
  }

  /** After the coordinator rebuilt its state from storage: commits may start again. */
  reset(): void {
    this.broken = false;
  }

  /** A commit failed: its state held folds that are now lost, so refuse what is queued and what comes. */
  private break(): void {
    this.broken = true;
    const queued = this.waiting;
    this.waiting = [];
    for (const w of queued) w.reject(discarded());
  }

  private storeNext(): void {
    const group = this.waiting;
    this.waiting = [];
    if (group.length === 0) return;
    let commit: FoldedCommit | null = null;
    try {
      const state = this.capture();
      if (state !== null) commit = { ...state, entries: group.map((w) => w.entry) };
    } catch (error) {
      this.break();
      for (const w of group) w.reject(error);
      return;
    }
    if (commit === null) {
      for (const w of group) w.reject(discarded());
      return;
    }
    const settle = (result: FoldedCommitResult) => {
      if (result.kind === 'committed') {
        for (const [i, w] of group.entries()) w.resolve({ kind: 'appended', seq: result.seqs[i] as number });
        return;
      }
      // Nothing of the group was written: the duplicate gets its earlier answer, the rest a refusal.
      this.break();
      for (const [i, w] of group.entries())
        if (i === result.index) w.resolve({ kind: 'duplicate', seq: result.seq, response: result.response });
        else w.reject(discarded());
    };
    const fail = (error: unknown) => {
      this.break();
      for (const w of group) w.reject(error);
    };
    this.storing = this.storage
      .commitFolded(commit)
      .then(settle, fail)
      .finally(() => {
        this.storing = null;
        this.storeNext();
      });
  }
}

function discarded(): StorageError {
  return new StorageError(
    'BACKEND_UNAVAILABLE',
    'the state this update was folded into was discarded (a group commit failed); retry',
  );
}
