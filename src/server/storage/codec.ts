/**
 * Helpers shared by the storage backends: byte-exact blob conversion and argument validation, so
 * both backends reject the same inputs with the same typed errors before touching the database.
 */
import type {
  Checkpoint,
  DeviceRecord,
  FoldedCommit,
  FoldedCommitResult,
  FoldedEntryInput,
  JournalEntry,
  JournalEntryInput,
  MetricRecord,
  RoundStateRecord,
  TaskRecord,
} from './types.ts';
import { StorageError } from './types.ts';

/** A copy of the array's bytes (the caller may reuse or mutate its array after we return). */
export function float32ToBytes(a: Float32Array): Buffer {
  return Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

/**
 * Bytes → a fresh, aligned Float32Array. Copying through Uint8Array views keeps every bit,
 * including NaN payloads and -0 (no float is ever read as a number on the way).
 */
export function bytesToFloat32(bytes: Uint8Array, what: string): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new StorageError('CORRUPT', `${what}: ${bytes.byteLength} bytes is not a whole number of float32`);
  }
  const out = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export function bytesToBuffer(a: Uint8Array): Buffer {
  return Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

/** A fresh Uint8Array that owns its memory (not a view into a driver's buffer pool). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/** JSON text for an opaque value; `undefined` is stored as null so it round-trips as valid JSON. */
export function encodeJson(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new StorageError('INVALID_INPUT', `${what} is not JSON-serializable: ${(err as Error).message}`);
  }
  return text ?? 'null';
}

export function decodeJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new StorageError('CORRUPT', `${what}: stored JSON does not parse`);
  }
}

function invalid(message: string): never {
  throw new StorageError('INVALID_INPUT', message);
}

function nonEmptyString(v: unknown, what: string): void {
  if (typeof v !== 'string' || v.length === 0) invalid(`${what} must be a non-empty string`);
}

function finiteNumber(v: unknown, what: string): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) invalid(`${what} must be a finite number`);
}

function nonNegativeInteger(v: unknown, what: string): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    invalid(`${what} must be a non-negative integer`);
  }
}

export function validateTask(task: TaskRecord): void {
  nonEmptyString(task.taskId, 'taskId');
  finiteNumber(task.createdAt, 'createdAt');
}

export function validateEntry(entry: JournalEntryInput): void {
  nonEmptyString(entry.taskId, 'taskId');
  validateEntryFields(entry);
  if (!(entry.delta instanceof Float32Array)) invalid('delta must be a Float32Array');
  if (entry.fencingToken !== undefined) validateFencingToken(entry.fencingToken);
}

/** A folded commit's fields, and each entry's as for appendAccepted (no delta). */
export function validateFoldedCommit(commit: FoldedCommit): void {
  nonEmptyString(commit.taskId, 'taskId');
  if (!Array.isArray(commit.entries) || commit.entries.length === 0)
    invalid('a folded commit needs at least one entry');
  for (const entry of commit.entries) validateEntryFields(entry);
  nonNegativeInteger(commit.version, 'version');
  if (!(commit.params instanceof Float32Array)) invalid('params must be a Float32Array');
  if (!(commit.state instanceof Uint8Array)) invalid('state must be a Uint8Array');
  finiteNumber(commit.createdAt, 'createdAt');
  if (commit.fencingToken !== undefined) validateFencingToken(commit.fencingToken);
}

/**
 * A folded commit's duplicate (see FoldedCommitResult): the first entry whose key the task applied
 * before (`applied` gives that key's seq and stored response, JSON text) or that repeats an earlier
 * entry of the group (seq 0, that entry's response); null if every key is new. `responses`: the
 * entries' responses as JSON text, in entry order.
 */
export function firstDuplicate(
  keys: readonly string[],
  responses: readonly string[],
  applied: (key: string) => { seq: number; response: string } | undefined,
): Extract<FoldedCommitResult, { kind: 'duplicate' }> | null {
  const firstInGroup = new Map<string, number>();
  for (const [index, key] of keys.entries()) {
    const seen = applied(key);
    if (seen)
      return { kind: 'duplicate', index, seq: seen.seq, response: decodeJson(seen.response, 'response') };
    const first = firstInGroup.get(key);
    if (first !== undefined)
      return {
        kind: 'duplicate',
        index,
        seq: 0,
        response: decodeJson(responses[first] as string, 'response'),
      };
    firstInGroup.set(key, index);
  }
  return null;
}

function validateEntryFields(entry: FoldedEntryInput): void {
  if (typeof entry !== 'object' || entry === null) invalid('an entry must be an object');
  nonEmptyString(entry.idempotencyKey, 'idempotencyKey');
  if (entry.keyExpiresAt !== undefined) finiteNumber(entry.keyExpiresAt, 'keyExpiresAt');
  nonEmptyString(entry.deviceId, 'deviceId');
  nonEmptyString(entry.assignmentId, 'assignmentId');
  nonNegativeInteger(entry.baseVersion, 'baseVersion');
  finiteNumber(entry.numExamples, 'numExamples');
  if (entry.numExamples < 0) invalid('numExamples must be ≥ 0');
  finiteNumber(entry.acceptedAt, 'acceptedAt');
}

export function validatePrune(taskId: string, expiredBefore: number): void {
  nonEmptyString(taskId, 'taskId');
  finiteNumber(expiredBefore, 'expiredBefore');
}

export function validateFencingToken(token: unknown): void {
  nonNegativeInteger(token, 'fencingToken');
}

export function fencedError(taskId: string, token: number, fence: number): StorageError {
  return new StorageError(
    'FENCED',
    `fencing token ${token} is below task ${taskId}'s fence ${fence}: another coordinator took over the lease`,
  );
}

export function validateCheckpoint(cp: Checkpoint): void {
  nonEmptyString(cp.taskId, 'taskId');
  nonNegativeInteger(cp.version, 'version');
  nonNegativeInteger(cp.journalSeq, 'journalSeq');
  if (!(cp.params instanceof Float32Array)) invalid('params must be a Float32Array');
  if (!(cp.state instanceof Uint8Array)) invalid('state must be a Uint8Array');
  finiteNumber(cp.createdAt, 'createdAt');
  if (cp.fencingToken !== undefined) validateFencingToken(cp.fencingToken);
}

export function validateDevice(d: DeviceRecord): void {
  nonEmptyString(d.deviceId, 'deviceId');
  if (typeof d.tokenHash !== 'string' || !/^[0-9a-f]{64}$/.test(d.tokenHash)) {
    invalid('tokenHash must be 64 lowercase hex characters (SHA-256)');
  }
  finiteNumber(d.createdAt, 'createdAt');
  if (d.revokedAt !== null) finiteNumber(d.revokedAt, 'revokedAt');
}

export function validateMetric(m: MetricRecord): void {
  nonEmptyString(m.taskId, 'taskId');
  nonNegativeInteger(m.version, 'version');
  finiteNumber(m.at, 'at');
  if (typeof m.values !== 'object' || m.values === null || Array.isArray(m.values)) {
    invalid('values must be an object');
  }
}

export function validateRejections(taskId: string, counts: Readonly<Record<string, number>>): void {
  nonEmptyString(taskId, 'taskId');
  if (typeof counts !== 'object' || counts === null || Array.isArray(counts))
    invalid('counts must be an object');
  for (const [reason, n] of Object.entries(counts)) {
    nonEmptyString(reason, 'reason');
    if (reason.length > 64) invalid('reason must be at most 64 characters');
    nonNegativeInteger(n, `count of ${reason}`);
  }
}

export function validateRoundState(r: RoundStateRecord): void {
  nonEmptyString(r.taskId, 'taskId');
  finiteNumber(r.updatedAt, 'updatedAt');
  if (r.state === undefined) invalid('state must be JSON');
  if (r.fencingToken !== undefined) validateFencingToken(r.fencingToken);
}

export function validateLimit(limit: number): void {
  nonNegativeInteger(limit, 'limit');
}

/**
 * The journalSeq of a new checkpoint may not move backwards (those entries are already deleted)
 * nor beyond the last assigned seq (it would claim entries that do not exist yet).
 */
export function checkJournalSeq(cp: Checkpoint, previousJournalSeq: number, lastSeq: number): void {
  if (cp.journalSeq < previousJournalSeq) {
    invalid(`journalSeq ${cp.journalSeq} is below the previous checkpoint's ${previousJournalSeq}`);
  }
  if (cp.journalSeq > lastSeq) {
    invalid(`journalSeq ${cp.journalSeq} is beyond the last appended seq ${lastSeq}`);
  }
}

// Rows as both backends return them (PostgreSQL's int8 parsed as numbers, see postgres.ts).
export interface TaskRow {
  task_id: string;
  spec: string;
  created_at: number;
}
export interface CheckpointRow {
  task_id: string;
  version: number;
  params: Buffer;
  state: Buffer;
  journal_seq: number;
  created_at: number;
}
export interface JournalRow {
  task_id: string;
  seq: number;
  idempotency_key: string;
  device_id: string;
  assignment_id: string;
  base_version: number;
  num_examples: number;
  delta: Buffer;
  response: string;
  accepted_at: number;
}
export interface DeviceRow {
  device_id: string;
  token_hash: string;
  created_at: number;
  revoked_at: number | null;
}
export function taskFromRow(r: TaskRow): TaskRecord {
  return { taskId: r.task_id, spec: decodeJson(r.spec, 'task spec'), createdAt: r.created_at };
}

export function checkpointFromRow(r: CheckpointRow): Checkpoint {
  return {
    taskId: r.task_id,
    version: r.version,
    params: bytesToFloat32(r.params, 'checkpoint params'),
    state: copyBytes(r.state),
    journalSeq: r.journal_seq,
    createdAt: r.created_at,
  };
}

export function entryFromRow(r: JournalRow): JournalEntry {
  return {
    taskId: r.task_id,
    seq: r.seq,
    idempotencyKey: r.idempotency_key,
    deviceId: r.device_id,
    assignmentId: r.assignment_id,
    baseVersion: r.base_version,
    numExamples: r.num_examples,
    delta: bytesToFloat32(r.delta, 'journal delta'),
    response: decodeJson(r.response, 'journal response'),
    acceptedAt: r.accepted_at,
  };
}

export function deviceFromRow(r: DeviceRow): DeviceRecord {
  return { deviceId: r.device_id, tokenHash: r.token_hash, createdAt: r.created_at, revokedAt: r.revoked_at };
}
