/**
 * The one conformance suite every Storage backend passes (node:test). A backend's test file calls
 * `runStorageConformance(name, makeHarness)`; each test gets a fresh, empty database from the
 * harness and may close and reopen it to check persistence.
 *
 * Expected values are written out by hand from the contract in types.ts (seq 1, 2, 3…, the bytes
 * put in), never read back from another backend.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import type {
  Checkpoint,
  DeviceRecord,
  FoldedCommit,
  FoldedEntryInput,
  JournalEntryInput,
  Storage,
} from './types.ts';
import { StorageError } from './types.ts';

export interface StorageHarness {
  /** Opens and initializes a Storage on this harness's database; callable again after close. */
  open(): Promise<Storage>;
  /** Drops the database (after every Storage it opened is closed). */
  dispose(): Promise<void>;
}

export interface ConformanceOptions {
  /** Skip every test with this reason (e.g. the backend's service is not installed). */
  readonly skip?: string | false;
}

function entry(taskId: string, key: string, over: Partial<JournalEntryInput> = {}): JournalEntryInput {
  return {
    taskId,
    idempotencyKey: key,
    deviceId: `dev-${key}`,
    assignmentId: `asg-${key}`,
    baseVersion: 3,
    numExamples: 17,
    delta: new Float32Array([1.5, -2.25, 0.125]),
    response: { status: 'accepted', key },
    acceptedAt: 1_700_000_000_000,
    ...over,
  };
}

function checkpoint(taskId: string, version: number, journalSeq: number, over: Partial<Checkpoint> = {}) {
  return {
    taskId,
    version,
    params: new Float32Array([version, version + 0.5]),
    state: new Uint8Array([version & 0xff, 7]),
    journalSeq,
    createdAt: 1_700_000_000_000 + version,
    ...over,
  } satisfies Checkpoint;
}

/** An update folded into a commit's state; its response differs from `entry`'s to tell them apart. */
function folded(key: string, over: Partial<FoldedEntryInput> = {}): FoldedEntryInput {
  return {
    idempotencyKey: key,
    deviceId: `dev-${key}`,
    assignmentId: `asg-${key}`,
    baseVersion: 3,
    numExamples: 17,
    response: { status: 'folded', key },
    acceptedAt: 1_700_000_000_000,
    ...over,
  };
}

function foldedCommit(
  taskId: string,
  version: number,
  entries: ReadonlyArray<string | FoldedEntryInput>,
  over: Partial<FoldedCommit> = {},
): FoldedCommit {
  return {
    taskId,
    entries: entries.map((e) => (typeof e === 'string' ? folded(e) : e)),
    version,
    params: new Float32Array([version, -version - 0.25]),
    state: new Uint8Array([version & 0xff, 9, 8]),
    createdAt: 1_800_000_000_000 + version,
    ...over,
  };
}

function hash(i: number): string {
  return i.toString(16).padStart(64, '0');
}

/** The raw bytes of a typed array, for bit-exact comparison (NaN payloads, -0). */
function bytes(a: Float32Array | Uint8Array): number[] {
  return [...new Uint8Array(a.buffer, a.byteOffset, a.byteLength)];
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StorageError, `expected StorageError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

export function runStorageConformance(
  name: string,
  makeHarness: () => Promise<StorageHarness>,
  options: ConformanceOptions = {},
): void {
  const skip = options.skip ?? false;

  /** Runs `body` with a fresh database; closes every opened Storage and disposes after. */
  async function withDb(body: (open: () => Promise<Storage>) => Promise<void>): Promise<void> {
    const harness = await makeHarness();
    const opened: Storage[] = [];
    try {
      await body(async () => {
        const s = await harness.open();
        opened.push(s);
        return s;
      });
    } finally {
      for (const s of opened) await s.close().catch(() => {});
      await harness.dispose();
    }
  }

  describe(`storage conformance: ${name}`, { skip }, () => {
    test('init is idempotent; an empty database has no tasks, checkpoints, journal, devices or metrics', () =>
      withDb(async (open) => {
        const s = await open();
        await s.init();
        assert.deepEqual(await s.listTasks(), []);
        assert.equal(await s.getTask('t'), null);
        assert.equal(await s.latestCheckpoint('t'), null);
        assert.deepEqual(await s.journalSince('t', 0), []);
        assert.equal(await s.lookupIdempotencyKey('t', 'k'), null);
        assert.equal(await s.deviceByTokenHash(hash(1)), null);
        assert.deepEqual(await s.metrics('t', 10), []);
      }));

    test('tasks: put, get, list, and put again replaces the spec', () =>
      withDb(async (open) => {
        const s = await open();
        await s.putTask({ taskId: 'b', spec: { model: 'softmax', k: [1, 2] }, createdAt: 20 });
        await s.putTask({ taskId: 'a', spec: { model: 'mlp', nested: { x: null } }, createdAt: 10 });
        assert.deepEqual(await s.getTask('a'), {
          taskId: 'a',
          spec: { model: 'mlp', nested: { x: null } },
          createdAt: 10,
        });
        assert.deepEqual((await s.listTasks()).map((t) => t.taskId).sort(), ['a', 'b']);
        await s.putTask({ taskId: 'a', spec: { model: 'cnn' }, createdAt: 30 });
        assert.deepEqual(await s.getTask('a'), { taskId: 'a', spec: { model: 'cnn' }, createdAt: 30 });
        assert.equal((await s.listTasks()).length, 2);
        assert.equal(await s.getTask('missing'), null);
        await rejectsWith(s.putTask({ taskId: '', spec: {}, createdAt: 1 }), 'INVALID_INPUT');
      }));

    test('journal: per-task seq starts at 1 and increases by one; journalSince returns seq order', () =>
      withDb(async (open) => {
        const s = await open();
        const got: Array<[string, number]> = [];
        for (let i = 0; i < 5; i++) {
          for (const task of ['x', 'y']) {
            const r = await s.appendAccepted(entry(task, `${task}${i}`, { numExamples: i }));
            assert.equal(r.kind, 'appended');
            got.push([task, r.seq]);
          }
        }
        assert.deepEqual(
          got.filter(([t]) => t === 'x').map(([, seq]) => seq),
          [1, 2, 3, 4, 5],
        );
        assert.deepEqual(
          got.filter(([t]) => t === 'y').map(([, seq]) => seq),
          [1, 2, 3, 4, 5],
        );
        const all = await s.journalSince('x', 0);
        assert.deepEqual(
          all.map((e) => [e.seq, e.idempotencyKey, e.numExamples]),
          [
            [1, 'x0', 0],
            [2, 'x1', 1],
            [3, 'x2', 2],
            [4, 'x3', 3],
            [5, 'x4', 4],
          ],
        );
        assert.deepEqual(
          (await s.journalSince('x', 3)).map((e) => e.seq),
          [4, 5],
        );
        assert.deepEqual(await s.journalSince('x', 5), []);
        const first = all[0];
        assert.ok(first);
        const expected = entry('x', 'x0', { numExamples: 0 });
        assert.equal(first.taskId, 'x');
        assert.equal(first.deviceId, expected.deviceId);
        assert.equal(first.assignmentId, expected.assignmentId);
        assert.equal(first.baseVersion, 3);
        assert.equal(first.acceptedAt, expected.acceptedAt);
        assert.deepEqual(first.response, { status: 'accepted', key: 'x0' });
        assert.ok(first.delta instanceof Float32Array);
        assert.deepEqual([...first.delta], [1.5, -2.25, 0.125]);
      }));

    test('idempotency: a repeated key returns the original seq and response and writes nothing', () =>
      withDb(async (open) => {
        const s = await open();
        assert.deepEqual(await s.appendAccepted(entry('t', 'k1')), { kind: 'appended', seq: 1 });
        assert.deepEqual(await s.appendAccepted(entry('t', 'k2')), { kind: 'appended', seq: 2 });
        const again = await s.appendAccepted(
          entry('t', 'k1', { response: { status: 'different' }, delta: new Float32Array([9]) }),
        );
        assert.deepEqual(again, { kind: 'duplicate', seq: 1, response: { status: 'accepted', key: 'k1' } });
        const journal = await s.journalSince('t', 0);
        assert.equal(journal.length, 2);
        assert.deepEqual([...(journal[0]?.delta ?? [])], [1.5, -2.25, 0.125]);
        // The duplicate consumed no seq.
        assert.deepEqual(await s.appendAccepted(entry('t', 'k3')), { kind: 'appended', seq: 3 });
        // Keys are per task.
        assert.deepEqual(await s.appendAccepted(entry('u', 'k1')), { kind: 'appended', seq: 1 });
        assert.deepEqual(await s.lookupIdempotencyKey('t', 'k2'), {
          seq: 2,
          response: { status: 'accepted', key: 'k2' },
        });
        assert.equal(await s.lookupIdempotencyKey('t', 'nope'), null);
      }));

    test('idempotency and seq survive close and reopen', () =>
      withDb(async (open) => {
        const s1 = await open();
        await s1.appendAccepted(entry('t', 'a'));
        await s1.appendAccepted(entry('t', 'b'));
        await s1.close();
        const s2 = await open();
        assert.deepEqual(await s2.appendAccepted(entry('t', 'a')), {
          kind: 'duplicate',
          seq: 1,
          response: { status: 'accepted', key: 'a' },
        });
        assert.deepEqual(await s2.appendAccepted(entry('t', 'c')), { kind: 'appended', seq: 3 });
      }));

    test('idempotency keys past their expiry are pruned per task; keys without one, or not yet expired, stay', () =>
      withDb(async (open) => {
        const s = await open();
        await s.appendAccepted(entry('t', 'old', { keyExpiresAt: 1_000 }));
        await s.appendAccepted(entry('t', 'edge', { keyExpiresAt: 2_000 }));
        await s.appendAccepted(entry('t', 'forever'));
        await s.appendAccepted(entry('u', 'other-task', { keyExpiresAt: 1_000 }));
        await rejectsWith(s.pruneIdempotencyKeys('t', Number.NaN), 'INVALID_INPUT');
        await rejectsWith(s.pruneIdempotencyKeys('', 5), 'INVALID_INPUT');
        await rejectsWith(
          s.appendAccepted(entry('t', 'bad', { keyExpiresAt: Number.POSITIVE_INFINITY })),
          'INVALID_INPUT',
        );
        assert.equal(await s.pruneIdempotencyKeys('t', 2_000), 1); // strictly before
        assert.equal(await s.lookupIdempotencyKey('t', 'old'), null);
        assert.equal((await s.lookupIdempotencyKey('t', 'edge'))?.seq, 2);
        assert.equal((await s.lookupIdempotencyKey('t', 'forever'))?.seq, 3);
        assert.equal((await s.lookupIdempotencyKey('u', 'other-task'))?.seq, 1);
        // The journal and the task's seq are untouched: the next append continues after 3.
        assert.deepEqual(
          (await s.journalSince('t', 0)).map((e) => e.seq),
          [1, 2, 3],
        );
        assert.equal(await s.pruneIdempotencyKeys('t', 1e15), 1);
        assert.equal((await s.lookupIdempotencyKey('t', 'forever'))?.seq, 3);
        assert.deepEqual(await s.appendAccepted(entry('t', 'next')), { kind: 'appended', seq: 4 });
        await s.close();
        const s2 = await open();
        assert.equal(await s2.lookupIdempotencyKey('t', 'edge'), null);
        assert.equal((await s2.lookupIdempotencyKey('t', 'forever'))?.seq, 3);
      }));

    test('checkpoint: saving truncates the journal up to journalSeq; keys and seq survive truncation', () =>
      withDb(async (open) => {
        const s = await open();
        for (const k of ['a', 'b', 'c', 'd']) await s.appendAccepted(entry('t', k));
        await s.appendAccepted(entry('other', 'a'));
        await s.saveCheckpoint(checkpoint('t', 1, 2));
        assert.deepEqual(
          (await s.journalSince('t', 0)).map((e) => e.seq),
          [3, 4],
        );
        assert.equal((await s.journalSince('other', 0)).length, 1, 'other tasks untouched');
        const cp = await s.latestCheckpoint('t');
        assert.ok(cp);
        assert.equal(cp.version, 1);
        assert.equal(cp.journalSeq, 2);
        assert.deepEqual(bytes(cp.params), bytes(new Float32Array([1, 1.5])));
        assert.deepEqual([...cp.state], [1, 7]);
        // A key folded into the checkpoint is still a duplicate.
        assert.deepEqual(await s.appendAccepted(entry('t', 'a')), {
          kind: 'duplicate',
          seq: 1,
          response: { status: 'accepted', key: 'a' },
        });
        await s.saveCheckpoint(checkpoint('t', 5, 4));
        assert.deepEqual(await s.journalSince('t', 0), []);
        assert.equal((await s.latestCheckpoint('t'))?.version, 5);
        // Seq keeps counting after the journal was emptied.
        assert.deepEqual(await s.appendAccepted(entry('t', 'e')), { kind: 'appended', seq: 5 });
      }));

    test('checkpoint: a version not above the latest is rejected and changes nothing', () =>
      withDb(async (open) => {
        const s = await open();
        for (const k of ['a', 'b', 'c']) await s.appendAccepted(entry('t', k));
        await s.saveCheckpoint(checkpoint('t', 4, 1));
        await rejectsWith(s.saveCheckpoint(checkpoint('t', 4, 3)), 'VERSION_NOT_INCREASING');
        await rejectsWith(s.saveCheckpoint(checkpoint('t', 2, 3)), 'VERSION_NOT_INCREASING');
        // The failed saves truncated nothing and replaced nothing.
        assert.deepEqual(
          (await s.journalSince('t', 0)).map((e) => e.seq),
          [2, 3],
        );
        const cp = await s.latestCheckpoint('t');
        assert.equal(cp?.version, 4);
        assert.equal(cp?.journalSeq, 1);
        // Versions are per task: version 1 of another task is fine.
        await s.saveCheckpoint(checkpoint('u', 1, 0));
        assert.equal((await s.latestCheckpoint('u'))?.version, 1);
      }));

    test('checkpoint: journalSeq moving backwards or past the last seq is rejected and changes nothing', () =>
      withDb(async (open) => {
        const s = await open();
        for (const k of ['a', 'b', 'c']) await s.appendAccepted(entry('t', k));
        await s.saveCheckpoint(checkpoint('t', 1, 2));
        await rejectsWith(s.saveCheckpoint(checkpoint('t', 2, 1)), 'INVALID_INPUT');
        await rejectsWith(s.saveCheckpoint(checkpoint('t', 2, 4)), 'INVALID_INPUT');
        await rejectsWith(
          s.saveCheckpoint({ ...checkpoint('t', 2, 3), params: [1, 2] as unknown as Float32Array }),
          'INVALID_INPUT',
        );
        assert.equal((await s.latestCheckpoint('t'))?.version, 1);
        assert.deepEqual(
          (await s.journalSince('t', 0)).map((e) => e.seq),
          [3],
        );
        // A checkpoint with journalSeq 0 before any append is valid (the initial model).
        await s.saveCheckpoint(checkpoint('fresh', 0, 0));
        assert.equal((await s.latestCheckpoint('fresh'))?.version, 0);
      }));

    test('blobs are bit-exact: NaN payloads, -0, subnormals, infinities, views with an offset', () =>
      withDb(async (open) => {
        const s = await open();
        const raw = new Uint32Array([
          0x7fc00001, // quiet NaN with payload 1
          0xffc12345, // negative quiet NaN with payload
          0x7f800001, // signalling NaN
          0x80000000, // -0
          0x00000001, // smallest subnormal
          0x7f800000, // +Inf
          0xff800000, // -Inf
          0x7f7fffff, // largest finite
          0x3f800000, // 1
        ]);
        // A view starting at element 1 of a bigger buffer: only the view's bytes are stored.
        const backing = new Float32Array(raw.length + 2);
        new Uint32Array(backing.buffer).set(raw, 1);
        const delta = backing.subarray(1, raw.length + 1);
        const expected = bytes(new Float32Array(raw.buffer));
        await s.appendAccepted(entry('t', 'nan', { delta }));
        const state = new Uint8Array([0, 255, 128, 1, 0]);
        await s.saveCheckpoint(checkpoint('t', 1, 0, { params: delta, state }));
        // Mutating the caller's arrays after the call must not change what was stored.
        backing.fill(0);
        state.fill(9);
        const [got] = await s.journalSince('t', 0);
        assert.ok(got);
        assert.deepEqual(bytes(got.delta), expected);
        const cp = await s.latestCheckpoint('t');
        assert.ok(cp);
        assert.deepEqual(bytes(cp.params), expected);
        assert.deepEqual([...cp.state], [0, 255, 128, 1, 0]);
        assert.ok(Object.is(cp.params[3], -0));
        // Returned arrays are the caller's own copies.
        cp.params.fill(1);
        assert.deepEqual(bytes((await s.latestCheckpoint('t'))?.params ?? new Float32Array()), expected);
        // Empty arrays round-trip too.
        await s.saveCheckpoint(
          checkpoint('t', 2, 1, { params: new Float32Array(0), state: new Uint8Array(0) }),
        );
        const empty = await s.latestCheckpoint('t');
        assert.equal(empty?.params.length, 0);
        assert.equal(empty?.state.length, 0);
      }));

    test('bad journal input is rejected with INVALID_INPUT and consumes no seq', () =>
      withDb(async (open) => {
        const s = await open();
        await rejectsWith(s.appendAccepted(entry('t', '')), 'INVALID_INPUT');
        await rejectsWith(s.appendAccepted(entry('t', 'k', { numExamples: -1 })), 'INVALID_INPUT');
        await rejectsWith(s.appendAccepted(entry('t', 'k', { numExamples: Number.NaN })), 'INVALID_INPUT');
        await rejectsWith(
          s.appendAccepted(entry('t', 'k', { delta: new Float64Array(2) as unknown as Float32Array })),
          'INVALID_INPUT',
        );
        await rejectsWith(s.appendAccepted(entry('t', 'k', { response: 10n })), 'INVALID_INPUT');
        assert.deepEqual(await s.journalSince('t', 0), []);
        assert.equal(await s.lookupIdempotencyKey('t', 'k'), null);
        assert.deepEqual(await s.appendAccepted(entry('t', 'k')), { kind: 'appended', seq: 1 });
      }));

    test('devices: lookup by token hash, revoke once (first time kept), unknown device → false', () =>
      withDb(async (open) => {
        const s = await open();
        const d: DeviceRecord = {
          deviceId: 'phone-1',
          tokenHash: hash(0xabc),
          createdAt: 5,
          revokedAt: null,
        };
        await s.putDevice(d);
        await s.putDevice({ deviceId: 'phone-2', tokenHash: hash(0xdef), createdAt: 6, revokedAt: null });
        assert.deepEqual(await s.deviceByTokenHash(hash(0xabc)), d);
        assert.equal(await s.deviceByTokenHash(hash(0x123)), null);
        assert.equal(await s.revokeDevice('phone-1', 100), true);
        assert.deepEqual(await s.deviceByTokenHash(hash(0xabc)), { ...d, revokedAt: 100 });
        assert.equal(await s.revokeDevice('phone-1', 200), true);
        assert.equal((await s.deviceByTokenHash(hash(0xabc)))?.revokedAt, 100);
        assert.equal((await s.deviceByTokenHash(hash(0xdef)))?.revokedAt, null, 'other device untouched');
        assert.equal(await s.revokeDevice('ghost', 100), false);
        await rejectsWith(s.putDevice({ ...d, deviceId: 'x', tokenHash: 'not-hex' }), 'INVALID_INPUT');
      }));

    test('metrics: the most recent `limit`, oldest first, per task', () =>
      withDb(async (open) => {
        const s = await open();
        for (let v = 1; v <= 10; v++) {
          await s.appendMetric({
            taskId: 't',
            version: v,
            at: 1000 + v,
            values: { accuracy: v / 10, rejected: { nan: v } },
          });
          if (v % 3 === 0) await s.appendMetric({ taskId: 'u', version: v, at: v, values: { loss: v } });
        }
        const last3 = await s.metrics('t', 3);
        assert.deepEqual(
          last3.map((m) => m.version),
          [8, 9, 10],
        );
        assert.deepEqual(last3[2], {
          taskId: 't',
          version: 10,
          at: 1010,
          values: { accuracy: 1, rejected: { nan: 10 } },
        });
        assert.equal((await s.metrics('t', 100)).length, 10);
        assert.deepEqual(
          (await s.metrics('u', 100)).map((m) => m.version),
          [3, 6, 9],
        );
        assert.deepEqual(await s.metrics('t', 0), []);
        await rejectsWith(s.metrics('t', -1), 'INVALID_INPUT');
      }));

    test('rejections: counts add up by reason per task, survive reopening; bad input adds nothing', () =>
      withDb(async (open) => {
        const s = await open();
        assert.deepEqual(await s.rejections('t'), {});
        await s.addRejections('t', { nan: 2, shape: 1 });
        await s.addRejections('t', { nan: 3, stale: 0 });
        await Promise.all([s.addRejections('t', { stale: 1 }), s.addRejections('u', { nan: 7 })]);
        await s.addRejections('t', {});
        assert.deepEqual(await s.rejections('t'), { nan: 5, shape: 1, stale: 1 });
        assert.deepEqual(await s.rejections('u'), { nan: 7 });
        // One bad count refuses the whole call: the good reason beside it is not added either.
        await rejectsWith(s.addRejections('t', { nan: 1, shape: -1 }), 'INVALID_INPUT');
        await rejectsWith(s.addRejections('t', { nan: 1.5 }), 'INVALID_INPUT');
        await rejectsWith(s.addRejections('t', { '': 1 }), 'INVALID_INPUT');
        await rejectsWith(s.addRejections('', { nan: 1 }), 'INVALID_INPUT');
        assert.deepEqual(await s.rejections('t'), { nan: 5, shape: 1, stale: 1 });
        await s.close();
        const again = await open();
        assert.deepEqual(await again.rejections('t'), { nan: 5, shape: 1, stale: 1 });
      }));

    test('concurrent appends: every distinct key exactly once, unique gap-free seqs, duplicates agree', () =>
      withDb(async (open) => {
        const s = await open();
        const distinct = 60;
        const requests: string[] = [];
        for (let i = 0; i < distinct; i++) {
          requests.push(`key-${i}`, `key-${i}`);
          if (i % 4 === 0) requests.push(`key-${i}`);
        }
        const order = new Rng(6).permutation(requests.length);
        const shuffled = [...order].map((j) => requests[j] as string);
        const results = await Promise.all(shuffled.map((k) => s.appendAccepted(entry('t', k))));
        const seqOfKey = new Map<string, number>();
        let appended = 0;
        results.forEach((r, i) => {
          const k = shuffled[i] as string;
          if (r.kind === 'appended') {
            appended++;
            assert.equal(seqOfKey.has(k), false, `${k} appended twice`);
            seqOfKey.set(k, r.seq);
          }
        });
        assert.equal(appended, distinct);
        results.forEach((r, i) => {
          if (r.kind === 'duplicate') {
            const k = shuffled[i] as string;
            assert.equal(r.seq, seqOfKey.get(k));
            assert.deepEqual(r.response, { status: 'accepted', key: k });
          }
        });
        assert.deepEqual(
          [...seqOfKey.values()].sort((a, b) => a - b),
          Array.from({ length: distinct }, (_, i) => i + 1),
        );
        const journal = await s.journalSince('t', 0);
        assert.equal(journal.length, distinct);
        assert.equal(new Set(journal.map((e) => e.idempotencyKey)).size, distinct);
        for (const e of journal) assert.equal(seqOfKey.get(e.idempotencyKey), e.seq);
      }));

    test('appends issued without awaiting get seqs in call order and are seen by the next call', () =>
      withDb(async (open) => {
        const s = await open();
        const keys = Array.from({ length: 40 }, (_, i) => `ordered-${i}`);
        // Not awaited one by one: the caller relies on call order, as a server folding in order does.
        const pending = keys.map((k) => s.appendAccepted(entry('t', k)));
        const dup = s.appendAccepted(entry('t', 'ordered-3'));
        // A checkpoint called right after must see all 40 (journalSeq 40 is valid only then).
        await s.saveCheckpoint(checkpoint('t', 1, 40));
        const results = await Promise.all(pending);
        assert.deepEqual(
          results,
          keys.map((_, i) => ({ kind: 'appended', seq: i + 1 })),
        );
        assert.deepEqual(await dup, {
          kind: 'duplicate',
          seq: 4,
          response: { status: 'accepted', key: 'ordered-3' },
        });
        assert.deepEqual(await s.journalSince('t', 0), []);
        // And a read issued right after an un-awaited append sees it.
        const late = s.appendAccepted(entry('t', 'late'));
        assert.deepEqual(
          (await s.journalSince('t', 40)).map((e) => e.idempotencyKey),
          ['late'],
        );
        assert.deepEqual(await late, { kind: 'appended', seq: 41 });
      }));

    test('round state: one per task, put replaces it, survives reopen, fenced like appends, bad input refused', () =>
      withDb(async (open) => {
        let s = await open();
        assert.equal(await s.roundState('t'), null);
        const first = {
          round: 3,
          version: 2,
          openedAt: 1_700_000_000.25,
          cohort: [{ id: 'a', deadline: 5 }],
        };
        await s.putRoundState({ taskId: 't', state: first, updatedAt: 100 });
        await s.putRoundState({ taskId: 'u', state: { round: 0 }, updatedAt: 101 });
        assert.deepEqual(await s.roundState('t'), { taskId: 't', state: first, updatedAt: 100 });
        const second = { round: 3, version: 2, openedAt: 1_700_000_000.25, cohort: [] };
        await s.putRoundState({ taskId: 't', state: second, updatedAt: 102 });
        assert.deepEqual(await s.roundState('t'), { taskId: 't', state: second, updatedAt: 102 });
        await s.close();
        s = await open();
        assert.deepEqual(await s.roundState('t'), { taskId: 't', state: second, updatedAt: 102 });
        assert.deepEqual(await s.roundState('u'), { taskId: 'u', state: { round: 0 }, updatedAt: 101 });
        // A holder whose lease was taken over writes nothing; the new holder's write passes.
        await s.fence('t', 7);
        await rejectsWith(
          s.putRoundState({ taskId: 't', state: { stale: true }, updatedAt: 103, fencingToken: 6 }),
          'FENCED',
        );
        assert.deepEqual((await s.roundState('t'))?.state, second);
        await s.putRoundState({ taskId: 't', state: { round: 4 }, updatedAt: 104, fencingToken: 7 });
        assert.deepEqual(await s.roundState('t'), { taskId: 't', state: { round: 4 }, updatedAt: 104 });
        // A larger token raises the fence by itself (then an append with the old token is FENCED).
        await s.putRoundState({ taskId: 't', state: { round: 5 }, updatedAt: 105, fencingToken: 9 });
        await rejectsWith(s.appendAccepted(entry('t', 'x', { fencingToken: 8 })), 'FENCED');
        await rejectsWith(s.putRoundState({ taskId: '', state: {}, updatedAt: 1 }), 'INVALID_INPUT');
        await rejectsWith(
          s.putRoundState({ taskId: 't', state: {}, updatedAt: Number.NaN }),
          'INVALID_INPUT',
        );
        await rejectsWith(
          s.putRoundState({ taskId: 't', state: {}, updatedAt: 1, fencingToken: -1 }),
          'INVALID_INPUT',
        );
        assert.deepEqual((await s.roundState('t'))?.state, { round: 5 });
      }));

    test('fencing: writes with a token below the fence are FENCED and write nothing', () =>
      withDb(async (open) => {
        const s = await open();
        const fenced = (p: Promise<unknown>) => rejectsWith(p, 'FENCED');
        // Holder 1 (token 10) works; holder 2 (token 11) takes over and fences before reading.
        assert.equal((await s.appendAccepted(entry('t', 'a', { fencingToken: 10 }))).seq, 1);
        await s.fence('t', 11);
        await fenced(s.appendAccepted(entry('t', 'b', { fencingToken: 10 })));
        await fenced(s.saveCheckpoint({ ...checkpoint('t', 1, 1), fencingToken: 10 }));
        await fenced(s.fence('t', 10));
        assert.equal(await s.lookupIdempotencyKey('t', 'b'), null);
        assert.equal(await s.latestCheckpoint('t'), null);
        // The new holder's writes pass; the stale holder's 'b' consumed no seq.
        assert.deepEqual(await s.appendAccepted(entry('t', 'c', { fencingToken: 11 })), {
          kind: 'appended',
          seq: 2,
        });
        await s.saveCheckpoint({ ...checkpoint('t', 1, 2), fencingToken: 11 });
        // A write with a larger token raises the fence by itself.
        await s.appendAccepted(entry('t', 'd', { fencingToken: 12 }));
        await fenced(s.appendAccepted(entry('t', 'e', { fencingToken: 11 })));
        // Writes without a token, and other tasks, are not fenced.
        assert.equal((await s.appendAccepted(entry('t', 'f'))).kind, 'appended');
        assert.equal((await s.appendAccepted(entry('u', 'a', { fencingToken: 1 }))).seq, 1);
        // In one batch of concurrent appends, only the fenced one fails.
        const batch = await Promise.allSettled([
          s.appendAccepted(entry('t', 'g', { fencingToken: 12 })),
          s.appendAccepted(entry('t', 'h', { fencingToken: 3 })),
          s.appendAccepted(entry('t', 'i')),
        ]);
        assert.deepEqual(
          batch.map((r) => r.status),
          ['fulfilled', 'rejected', 'fulfilled'],
        );
        assert.deepEqual(
          (await s.journalSince('t', 2)).map((e) => [e.seq, e.idempotencyKey]),
          [
            [3, 'd'],
            [4, 'f'],
            [5, 'g'],
            [6, 'i'],
          ],
        );
        await rejectsWith(s.fence('t', -1), 'INVALID_INPUT');
        await rejectsWith(s.appendAccepted(entry('t', 'j', { fencingToken: 1.5 })), 'INVALID_INPUT');
        // The fence persists.
        await s.close();
        const s2 = await open();
        await rejectsWith(s2.appendAccepted(entry('t', 'k', { fencingToken: 11 })), 'FENCED');
        await s2.fence('t', 1_764_000_000_000_123); // a RedisLease-sized token is exact
        await rejectsWith(s2.fence('t', 1_764_000_000_000_122), 'FENCED');
      }));

    describe('folded commits (commitFolded, foldedState)', () => {
      test('seqs continue the append sequence, keys are recorded, the journal is truncated, the state is bit-exact and survives reopening', () =>
        withDb(async (open) => {
          const s1 = await open();
          assert.equal(await s1.foldedState('t'), null);
          assert.deepEqual(await s1.appendAccepted(entry('t', 'a1')), { kind: 'appended', seq: 1 });
          assert.deepEqual(await s1.appendAccepted(entry('t', 'a2')), { kind: 'appended', seq: 2 });
          const raw = new Uint32Array([
            0x7fc00001, 0xffc12345, 0x7f800001, 0x80000000, 0x00000001, 0x3f800000,
          ]);
          // A view into a bigger buffer: only the view's bytes are stored.
          const backing = new Float32Array(raw.length + 2);
          new Uint32Array(backing.buffer).set(raw, 1);
          const params = backing.subarray(1, raw.length + 1);
          const expected = bytes(new Float32Array(raw.buffer));
          const state = new Uint8Array([0, 255, 128, 1, 0]);
          const commit = foldedCommit('t', 2, ['k3', folded('k4', { keyExpiresAt: 5_000 }), 'k5'], {
            params,
            state,
          });
          assert.deepEqual(await s1.commitFolded(commit), { kind: 'committed', seqs: [3, 4, 5] });
          // Mutating the caller's arrays after the call must not change what was stored.
          backing.fill(0);
          state.fill(9);
          // Every journal entry up to the last seq is inside the state.
          assert.deepEqual(await s1.journalSince('t', 0), []);
          assert.deepEqual(await s1.lookupIdempotencyKey('t', 'k3'), {
            seq: 3,
            response: { status: 'folded', key: 'k3' },
          });
          assert.deepEqual(await s1.lookupIdempotencyKey('t', 'k5'), {
            seq: 5,
            response: { status: 'folded', key: 'k5' },
          });
          const fs = await s1.foldedState('t');
          assert.ok(fs);
          assert.deepEqual(
            [fs.taskId, fs.version, fs.journalSeq, fs.createdAt],
            ['t', 2, 5, 1_800_000_000_002],
          );
          assert.deepEqual(bytes(fs.params), expected);
          assert.ok(Object.is(fs.params[3], -0));
          assert.deepEqual([...fs.state], [0, 255, 128, 1, 0]);
          assert.equal('fencingToken' in fs, false);
          // Checkpoints are unaffected; other tasks have none.
          assert.equal(await s1.latestCheckpoint('t'), null);
          assert.equal(await s1.foldedState('u'), null);
          // The next append continues the sequence; it is journaled after the state.
          assert.deepEqual(await s1.appendAccepted(entry('t', 'a6')), { kind: 'appended', seq: 6 });
          assert.deepEqual(
            (await s1.journalSince('t', 0)).map((e) => [e.seq, e.idempotencyKey]),
            [[6, 'a6']],
          );
          // The key's expiry was stored: k4 (expires 5000) is pruned, the others are kept.
          assert.equal(await s1.pruneIdempotencyKeys('t', 6_000), 1);
          assert.equal(await s1.lookupIdempotencyKey('t', 'k4'), null);
          await s1.close();
          const s2 = await open();
          const again = await s2.foldedState('t');
          assert.ok(again);
          assert.deepEqual(
            [again.taskId, again.version, again.journalSeq, again.createdAt],
            ['t', 2, 5, 1_800_000_000_002],
          );
          assert.deepEqual(bytes(again.params), expected);
          assert.deepEqual([...again.state], [0, 255, 128, 1, 0]);
          // A committed key is a duplicate for appendAccepted, with the commit's seq and response.
          assert.deepEqual(await s2.appendAccepted(entry('t', 'k3')), {
            kind: 'duplicate',
            seq: 3,
            response: { status: 'folded', key: 'k3' },
          });
          assert.deepEqual(await s2.appendAccepted(entry('t', 'a7')), { kind: 'appended', seq: 7 });
        }));

      test('params and state are read before commitFolded returns: changing them afterwards changes nothing stored', () =>
        withDb(async (open) => {
          const s = await open();
          // Queued behind an append, so that a backend that reads the arrays late would see the change.
          const before = s.appendAccepted(entry('t', 'a'));
          const commit = foldedCommit('t', 2, ['b']);
          const pending = s.commitFolded(commit);
          commit.params.fill(Number.NaN);
          commit.state.fill(0xee);
          assert.deepEqual(await before, { kind: 'appended', seq: 1 });
          assert.deepEqual(await pending, { kind: 'committed', seqs: [2] });
          const fs = await s.foldedState('t');
          assert.ok(fs);
          assert.deepEqual(bytes(fs.params), bytes(new Float32Array([2, -2.25])));
          assert.deepEqual([...fs.state], [2, 9, 8]);
        }));

      test('a second commit replaces the state; entries after a commit stay journaled; checkpoints still work', () =>
        withDb(async (open) => {
          const s = await open();
          await s.appendAccepted(entry('t', 'a'));
          await s.appendAccepted(entry('t', 'b'));
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 1, ['c'])), {
            kind: 'committed',
            seqs: [3],
          });
          assert.deepEqual(await s.appendAccepted(entry('t', 'd')), { kind: 'appended', seq: 4 });
          assert.deepEqual(await s.appendAccepted(entry('t', 'e')), { kind: 'appended', seq: 5 });
          assert.deepEqual(
            (await s.journalSince('t', 0)).map((e) => e.seq),
            [4, 5],
          );
          // Equal version: the buffer moved, the model did not.
          const second = foldedCommit('t', 1, ['f', 'g'], {
            params: new Float32Array([0.5, -0, 3]),
            state: new Uint8Array([42]),
            createdAt: 77,
          });
          assert.deepEqual(await s.commitFolded(second), { kind: 'committed', seqs: [6, 7] });
          assert.deepEqual(await s.journalSince('t', 0), []);
          const fs = await s.foldedState('t');
          assert.ok(fs);
          assert.deepEqual([fs.version, fs.journalSeq, fs.createdAt], [1, 7, 77]);
          assert.deepEqual(bytes(fs.params), bytes(new Float32Array([0.5, -0, 3])));
          assert.deepEqual([...fs.state], [42]);
          assert.deepEqual(await s.appendAccepted(entry('t', 'h')), { kind: 'appended', seq: 8 });
          // A periodic checkpoint may name a journalSeq below the newest commit's (here the first
          // commit's last seq, 3): accepted, and it deletes nothing newer.
          await s.saveCheckpoint(checkpoint('t', 3, 3));
          const cp = await s.latestCheckpoint('t');
          assert.deepEqual([cp?.version, cp?.journalSeq], [3, 3]);
          assert.deepEqual(
            (await s.journalSince('t', 0)).map((e) => e.seq),
            [8],
          );
          assert.deepEqual(
            [(await s.foldedState('t'))?.version, (await s.foldedState('t'))?.journalSeq],
            [1, 7],
          );
          // A commit's version equal to the latest checkpoint's is allowed.
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 3, ['i'])), {
            kind: 'committed',
            seqs: [9],
          });
          await s.saveCheckpoint(checkpoint('t', 4, 9));
          assert.deepEqual(await s.journalSince('t', 0), []);
          assert.equal((await s.latestCheckpoint('t'))?.journalSeq, 9);
          assert.deepEqual(await s.appendAccepted(entry('t', 'j')), { kind: 'appended', seq: 10 });
        }));

      test('a key applied before or repeated in the group: duplicate with the earlier seq and response, nothing written', () =>
        withDb(async (open) => {
          const s = await open();
          await s.appendAccepted(entry('t', 'a'));
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 1, ['b', 'c'])), {
            kind: 'committed',
            seqs: [2, 3],
          });
          const before = await s.foldedState('t');
          assert.equal(before?.journalSeq, 3);
          // A key appended earlier (entry index 1).
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 2, ['x', 'a', 'y'])), {
            kind: 'duplicate',
            index: 1,
            seq: 1,
            response: { status: 'accepted', key: 'a' },
          });
          // A key committed earlier; the new entry's own response does not matter.
          assert.deepEqual(
            await s.commitFolded(
              foldedCommit('t', 2, ['x', 'y', folded('c', { response: { status: 'other' } })]),
            ),
            { kind: 'duplicate', index: 2, seq: 3, response: { status: 'folded', key: 'c' } },
          );
          // A key repeated within the group: seq 0 and the first occurrence's response. The
          // duplicate carries a token above every fence; it raises nothing either.
          assert.deepEqual(
            await s.commitFolded(
              foldedCommit('t', 2, ['x', 'y', folded('x', { response: { status: 'second' } })], {
                fencingToken: 50,
              }),
            ),
            { kind: 'duplicate', index: 2, seq: 0, response: { status: 'folded', key: 'x' } },
          );
          assert.equal(await s.lookupIdempotencyKey('t', 'x'), null);
          assert.equal(await s.lookupIdempotencyKey('t', 'y'), null);
          assert.deepEqual(await s.foldedState('t'), before);
          assert.deepEqual(await s.appendAccepted(entry('t', 'z', { fencingToken: 49 })), {
            kind: 'appended',
            seq: 4,
          });
          assert.deepEqual(
            (await s.journalSince('t', 0)).map((e) => e.seq),
            [4],
          );
          assert.deepEqual(await s.appendAccepted(entry('t', 'b')), {
            kind: 'duplicate',
            seq: 2,
            response: { status: 'folded', key: 'b' },
          });
        }));

      test('a version below the latest checkpoint or the folded state is VERSION_NOT_INCREASING and writes nothing', () =>
        withDb(async (open) => {
          const s = await open();
          await s.appendAccepted(entry('t', 'a'));
          await s.saveCheckpoint(checkpoint('t', 5, 1));
          await rejectsWith(s.commitFolded(foldedCommit('t', 4, ['b'])), 'VERSION_NOT_INCREASING');
          assert.equal(await s.foldedState('t'), null);
          assert.equal(await s.lookupIdempotencyKey('t', 'b'), null);
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 5, ['b'])), {
            kind: 'committed',
            seqs: [2],
          });
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 7, ['c'])), {
            kind: 'committed',
            seqs: [3],
          });
          await s.appendAccepted(entry('t', 'd'));
          // 6 is above the checkpoint's 5 but below the folded state's 7.
          await rejectsWith(s.commitFolded(foldedCommit('t', 6, ['e'])), 'VERSION_NOT_INCREASING');
          const fs = await s.foldedState('t');
          assert.deepEqual([fs?.version, fs?.journalSeq], [7, 3]);
          assert.deepEqual(bytes(fs?.params ?? new Float32Array()), bytes(new Float32Array([7, -7.25])));
          assert.equal(await s.lookupIdempotencyKey('t', 'e'), null);
          assert.deepEqual(
            (await s.journalSince('t', 0)).map((e) => [e.seq, e.idempotencyKey]),
            [[4, 'd']],
          );
          assert.deepEqual(await s.appendAccepted(entry('t', 'f')), { kind: 'appended', seq: 5 });
        }));

      test('fencing: a token below the fence is FENCED and writes nothing; a larger one raises the fence', () =>
        withDb(async (open) => {
          const s = await open();
          await s.fence('t', 10);
          await rejectsWith(s.commitFolded(foldedCommit('t', 1, ['a'], { fencingToken: 9 })), 'FENCED');
          assert.equal(await s.foldedState('t'), null);
          assert.equal(await s.lookupIdempotencyKey('t', 'a'), null);
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 1, ['a'], { fencingToken: 10 })), {
            kind: 'committed',
            seqs: [1],
          });
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 2, ['b'], { fencingToken: 12 })), {
            kind: 'committed',
            seqs: [2],
          });
          await rejectsWith(s.appendAccepted(entry('t', 'c', { fencingToken: 11 })), 'FENCED');
          await rejectsWith(s.commitFolded(foldedCommit('t', 3, ['c'], { fencingToken: 11 })), 'FENCED');
          assert.deepEqual(
            [(await s.foldedState('t'))?.version, (await s.foldedState('t'))?.journalSeq],
            [2, 2],
          );
          // Without a token a commit is not checked.
          assert.deepEqual(await s.commitFolded(foldedCommit('t', 3, ['c'])), {
            kind: 'committed',
            seqs: [3],
          });
        }));

      test('bad input is INVALID_INPUT and writes nothing', () =>
        withDb(async (open) => {
          const s = await open();
          await s.appendAccepted(entry('t', 'a'));
          await s.commitFolded(foldedCommit('t', 1, ['b']));
          const before = await s.foldedState('t');
          const bad: FoldedCommit[] = [
            foldedCommit('t', 2, []),
            foldedCommit('t', 2, ['ok', '']),
            foldedCommit('t', 2, [folded('ok', { numExamples: -1 })]),
            foldedCommit('t', 2, [folded('ok', { numExamples: Number.NaN })]),
            foldedCommit('t', 2, [folded('ok', { baseVersion: 1.5 })]),
            foldedCommit('t', 2, [folded('ok', { deviceId: '' })]),
            foldedCommit('t', 2, [folded('ok', { acceptedAt: Number.POSITIVE_INFINITY })]),
            foldedCommit('t', 2, [folded('ok', { keyExpiresAt: Number.NaN })]),
            foldedCommit('t', 2, [folded('ok', { response: 10n })]),
            foldedCommit('t', 2, [null as unknown as FoldedEntryInput]),
            foldedCommit('t', -1, ['ok']),
            foldedCommit('t', 2, ['ok'], { params: [1, 2] as unknown as Float32Array }),
            foldedCommit('t', 2, ['ok'], { state: [1] as unknown as Uint8Array }),
            foldedCommit('t', 2, ['ok'], { createdAt: Number.NaN }),
            foldedCommit('t', 2, ['ok'], { fencingToken: 1.5 }),
            foldedCommit('', 2, ['ok']),
          ];
          for (const commit of bad) await rejectsWith(s.commitFolded(commit), 'INVALID_INPUT');
          assert.equal(await s.lookupIdempotencyKey('t', 'ok'), null);
          assert.deepEqual(await s.foldedState('t'), before);
          assert.deepEqual(await s.appendAccepted(entry('t', 'c')), { kind: 'appended', seq: 3 });
        }));

      test('commits issued without awaiting take effect in call order with appends', () =>
        withDb(async (open) => {
          const s = await open();
          const a = s.appendAccepted(entry('t', 'a'));
          const b = s.appendAccepted(entry('t', 'b'));
          const c = s.commitFolded(foldedCommit('t', 1, ['c', 'd']));
          const e = s.appendAccepted(entry('t', 'e'));
          const dup = s.commitFolded(foldedCommit('t', 2, ['f', 'e']));
          // A read issued right after sees everything called before it.
          const fs = await s.foldedState('t');
          assert.deepEqual([fs?.version, fs?.journalSeq], [1, 4]);
          assert.deepEqual(await Promise.all([a, b, c, e, dup]), [
            { kind: 'appended', seq: 1 },
            { kind: 'appended', seq: 2 },
            { kind: 'committed', seqs: [3, 4] },
            { kind: 'appended', seq: 5 },
            { kind: 'duplicate', index: 1, seq: 5, response: { status: 'accepted', key: 'e' } },
          ]);
          assert.deepEqual(
            (await s.journalSince('t', 0)).map((x) => [x.seq, x.idempotencyKey]),
            [[5, 'e']],
          );
        }));
    });

    test('close and reopen: tasks, checkpoints, journal, devices and metrics persist', () =>
      withDb(async (open) => {
        const s1 = await open();
        await s1.putTask({ taskId: 't', spec: { a: 1 }, createdAt: 1 });
        await s1.appendAccepted(entry('t', 'a'));
        await s1.appendAccepted(entry('t', 'b'));
        await s1.saveCheckpoint(checkpoint('t', 7, 1));
        await s1.putDevice({ deviceId: 'd', tokenHash: hash(7), createdAt: 1, revokedAt: null });
        await s1.revokeDevice('d', 50);
        await s1.appendMetric({ taskId: 't', version: 7, at: 2, values: { accuracy: 0.5 } });
        await s1.close();
        const s2 = await open();
        assert.deepEqual(await s2.getTask('t'), { taskId: 't', spec: { a: 1 }, createdAt: 1 });
        const cp = await s2.latestCheckpoint('t');
        assert.equal(cp?.version, 7);
        assert.equal(cp?.journalSeq, 1);
        assert.deepEqual(bytes(cp?.params ?? new Float32Array()), bytes(new Float32Array([7, 7.5])));
        assert.deepEqual(
          (await s2.journalSince('t', 0)).map((e) => e.idempotencyKey),
          ['b'],
        );
        assert.equal((await s2.deviceByTokenHash(hash(7)))?.revokedAt, 50);
        assert.deepEqual(
          (await s2.metrics('t', 5)).map((m) => m.values),
          [{ accuracy: 0.5 }],
        );
        await rejectsWith(s2.saveCheckpoint(checkpoint('t', 7, 2)), 'VERSION_NOT_INCREASING');
      }));
  });
}
