/**
 * The persistence contract of the Orchard server. Every backend (SQLite embedded default,
 * PostgreSQL) implements `Storage` and passes the one conformance suite in `conformance.ts`.
 *
 * Durability rule: the server answers "accepted" to a client only after the update is durable
 * (committed, fsync'd) in one of two forms: its journal entry with its delta (`appendAccepted`:
 * distributed modes, sync rounds, DP tasks), or its key inside a folded commit that stores the
 * task's state with the update already folded in (`commitFolded`: a standalone coordinator of an
 * asynchronous task, one state write per group of updates instead of one delta per update). After
 * a crash the server restores the newer of `latestCheckpoint` and `foldedState` (by journalSeq) and
 * replays `journalSince(journalSeq)`, so no accepted update is lost and none is applied twice.
 */

export interface TaskRecord {
  readonly taskId: string;
  /** The task definition as JSON (validated by the coordinator, opaque here). */
  readonly spec: unknown;
  readonly createdAt: number;
}

export interface Checkpoint {
  readonly taskId: string;
  /** Model version; strictly increasing per task. */
  readonly version: number;
  readonly params: Float32Array;
  /** Serialized strategy/optimizer state the coordinator needs to resume (opaque bytes). */
  readonly state: Uint8Array;
  /** Journal entries with seq ≤ journalSeq are already folded into this checkpoint. */
  readonly journalSeq: number;
  readonly createdAt: number;
  /** Optional lease fencing token of the writer; see `Storage.fence`. Not stored with the checkpoint. */
  readonly fencingToken?: number;
}

export interface JournalEntryInput {
  readonly taskId: string;
  /** Client-chosen key; the same (taskId, key) is applied at most once, ever. */
  readonly idempotencyKey: string;
  /**
   * ms since epoch after which no upload under this key can be accepted any more (the assignment's
   * signed deadline): `pruneIdempotencyKeys` may forget the key some time after it. Absent: kept.
   */
  readonly keyExpiresAt?: number;
  readonly deviceId: string;
  readonly assignmentId: string;
  readonly baseVersion: number;
  readonly numExamples: number;
  readonly delta: Float32Array;
  /**
   * The caller leaves `delta` unchanged until the append settles (it awaits it). A backend may then
   * read it in place instead of copying it at call time: the SQLite backend hands a delta in shared
   * memory (SharedArrayBuffer) straight to its segment writer thread. Without it, the caller may
   * reuse its array as soon as the call returns.
   */
  readonly deltaStable?: boolean;
  /** The outcome returned to the client (JSON), stored so a replayed request gets the same answer. */
  readonly response: unknown;
  readonly acceptedAt: number;
  /** Optional lease fencing token of the writer; see `Storage.fence`. Not stored with the entry. */
  readonly fencingToken?: number;
}

export interface JournalEntry extends JournalEntryInput {
  /** Per-task sequence number assigned by the backend, strictly increasing, starting at 1. */
  readonly seq: number;
}

/** An accepted update whose delta is already folded into a `FoldedCommit`'s state: no delta. */
export type FoldedEntryInput = Omit<JournalEntryInput, 'taskId' | 'delta' | 'deltaStable' | 'fencingToken'>;

/**
 * A group of accepted updates stored as their effect instead of their deltas: the task's whole
 * state (model version, params, strategy state with the FedBuff buffer) after folding them, plus
 * each update's idempotency key and answer. One such record per group replaces one 400 kB journal
 * payload per update (the standalone coordinator's way of making updates durable; see
 * `Storage.commitFolded`).
 */
export interface FoldedCommit {
  readonly taskId: string;
  /** The updates folded since the previous commit, in fold order (at least one). */
  readonly entries: readonly FoldedEntryInput[];
  /** Model version of `params`; not below the latest checkpoint's nor the previous commit's. */
  readonly version: number;
  readonly params: Float32Array;
  /** Strategy state (opaque bytes, as in `Checkpoint.state`) including every entry's fold. */
  readonly state: Uint8Array;
  readonly createdAt: number;
  /** Optional lease fencing token of the writer; see `Storage.fence`. */
  readonly fencingToken?: number;
}

export type FoldedCommitResult =
  /** Seqs of the entries, in order; the stored state's `journalSeq` is the last. */
  | { readonly kind: 'committed'; readonly seqs: readonly number[] }
  /**
   * Entry `index`'s key was applied before (or appears twice in the group): nothing of the commit
   * was written. `seq` and `response` are those of the earlier application (for a key repeated
   * within the group: seq 0 and the first occurrence's response).
   */
  | { readonly kind: 'duplicate'; readonly index: number; readonly seq: number; readonly response: unknown };

export type AppendResult =
  | { readonly kind: 'appended'; readonly seq: number }
  /** The key was applied before: nothing written; the original response is returned. */
  | { readonly kind: 'duplicate'; readonly seq: number; readonly response: unknown };

export interface DeviceRecord {
  readonly deviceId: string;
  /** SHA-256 of the bearer token, 64 lowercase hex digits; the token itself is never stored. */
  readonly tokenHash: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
}

export interface MetricRecord {
  readonly taskId: string;
  readonly version: number;
  readonly at: number;
  /** e.g. {accuracy, loss, updatesPerSecond, staleness, inFlight, rejected:{reason:count}} */
  readonly values: Readonly<Record<string, unknown>>;
}

/**
 * A sync task's open round (its clock and the devices selected for it), so that a restart keeps the
 * round's deadline and still accepts its devices' uploads. One per task; each put replaces it.
 */
export interface RoundStateRecord {
  readonly taskId: string;
  /** The coordinator's round state as JSON (opaque here). */
  readonly state: unknown;
  readonly updatedAt: number;
  /** Optional lease fencing token of the writer; see `Storage.fence`. Not stored with the record. */
  readonly fencingToken?: number;
}

export interface Storage {
  /** Creates tables if needed. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;

  putTask(task: TaskRecord): Promise<void>;
  getTask(taskId: string): Promise<TaskRecord | null>;
  listTasks(): Promise<TaskRecord[]>;

  /**
   * Stores a checkpoint and, in the same transaction, deletes journal entries with seq ≤
   * journalSeq (their effect is inside the checkpoint). Idempotency keys are kept forever.
   * Rejects (StorageError 'VERSION_NOT_INCREASING') if version ≤ the latest stored version.
   */
  saveCheckpoint(checkpoint: Checkpoint): Promise<void>;
  latestCheckpoint(taskId: string): Promise<Checkpoint | null>;

  /**
   * Durably appends an accepted update and records its idempotency key, atomically. Calls on one
   * instance take effect in call order: concurrent appends of a task get seqs in the order they
   * were called (so a caller need not await one before issuing the next), and any later call
   * (read, checkpoint) observes them. Backends may commit several appends in one transaction
   * (group commit); each promise still resolves only after its entry is durable.
   */
  appendAccepted(entry: JournalEntryInput): Promise<AppendResult>;
  /**
   * Entries with seq > afterSeq, in seq order. Entries become visible in seq order, also with
   * several writer processes (seqs are assigned under the task's write lock and committed before
   * the next writer gets it), so a reader can tail the journal by its last seen seq without gaps.
   */
  journalSince(taskId: string, afterSeq: number): Promise<JournalEntry[]>;
  /**
   * Durably stores a group of updates already folded into `commit.state`, atomically: checks the
   * fence (FENCED, nothing written) and every key (a duplicate writes nothing, see
   * FoldedCommitResult); gives the entries the task's next seqs (one sequence with appendAccepted's),
   * records their keys and responses as appendAccepted does, replaces the task's folded state with
   * `commit` (its journalSeq = the last entry's seq) and deletes journal entries with seq ≤ that
   * journalSeq (their effect is inside the state). Resolves only once all of it is durable. Rejects
   * with VERSION_NOT_INCREASING if `version` is below the latest checkpoint's or the stored folded
   * state's version (equal is allowed: the buffer moved, the model did not), INVALID_INPUT for no
   * entries or malformed fields. Takes effect in call order with appendAccepted. Checkpoints are
   * unaffected: a recovering coordinator resumes from whichever of `latestCheckpoint` and
   * `foldedState` has the larger journalSeq (the checkpoint on a tie), then replays the journal
   * after it. `params` and `state` are read before the call returns (the caller may hand in views
   * of memory it changes right after).
   */
  commitFolded(commit: FoldedCommit): Promise<FoldedCommitResult>;
  /** The task's last committed folded state as a checkpoint (no fencing token), or null. */
  foldedState(taskId: string): Promise<Checkpoint | null>;
  /** The stored response for an already-applied key, or null. */
  lookupIdempotencyKey(taskId: string, key: string): Promise<{ seq: number; response: unknown } | null>;
  /**
   * Forgets the task's keys whose `keyExpiresAt` is before `expiredBefore` (keys without one stay);
   * resolves with how many went. Safe because such keys can never be accepted again: the aggregator
   * refuses an upload whose signed deadline has passed, so at-most-once still holds; only a retry
   * that late gets `not_assigned` instead of its original answer. Bounds the key table's growth.
   */
  pruneIdempotencyKeys(taskId: string, expiredBefore: number): Promise<number>;

  /**
   * Fencing against a coordinator that lost its lease without noticing (paused, partitioned from
   * Redis): a new lease holder calls `fence(taskId, token)` with its lease's fencing token BEFORE
   * reading the checkpoint and journal. From then on an append or checkpoint of that task carrying
   * a smaller `fencingToken` is rejected with StorageError('FENCED') and writes nothing, so a stale
   * holder can neither slip an entry in after the new holder read the journal nor overwrite its
   * checkpoints. Writes carrying a larger token raise the fence; writes without a token are not
   * checked. Rejects with FENCED if `token` is below the current fence.
   */
  fence(taskId: string, token: number): Promise<void>;

  putDevice(device: DeviceRecord): Promise<void>;
  deviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null>;
  /** Marks a device revoked; returns false if unknown. */
  revokeDevice(deviceId: string, at: number): Promise<boolean>;

  /**
   * Durably replaces the task's round state (resolves once it is committed). Fenced like appends: a
   * `fencingToken` below the task's fence is rejected with FENCED and writes nothing.
   */
  putRoundState(record: RoundStateRecord): Promise<void>;
  /** The last round state put for the task (without its fencing token), or null. */
  roundState(taskId: string): Promise<RoundStateRecord | null>;

  /**
   * Adds to the task's running counts of refused updates by reason (the dashboard's "rejected by
   * reason"): every process serving the task adds its own, and the counts outlive restarts.
   * Monitoring, not a ledger: a crash may lose counts not yet added. Counts must be integers ≥ 0
   * and reasons non-empty (else INVALID_INPUT, nothing added).
   */
  addRejections(taskId: string, counts: Readonly<Record<string, number>>): Promise<void>;
  /** The task's refused updates by reason, summed over every `addRejections` ({} if none). */
  rejections(taskId: string): Promise<Record<string, number>>;

  appendMetric(metric: MetricRecord): Promise<void>;
  /** Most recent `limit` metrics of a task, oldest first. */
  metrics(taskId: string, limit: number): Promise<MetricRecord[]>;
}

export type StorageErrorCode =
  | 'VERSION_NOT_INCREASING'
  | 'NOT_FOUND'
  | 'BACKEND_UNAVAILABLE'
  | 'CORRUPT'
  /** A malformed argument (wrong type, negative count, journalSeq out of range); nothing written. */
  | 'INVALID_INPUT'
  /** The write carried a fencing token below the task's fence (its lease was taken over); nothing written. */
  | 'FENCED';

export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StorageError';
  }
}
