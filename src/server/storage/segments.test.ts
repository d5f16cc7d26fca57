/**
 * Journal payload segments of the SQLite backend (segments.ts): what a crash or a damaged disk can
 * leave behind. A torn tail (bytes of a write nobody was answered for) is ignored; a payload that a
 * committed row points at and that is missing, short or fails its CRC-32 is a StorageError('CORRUPT'),
 * never an entry silently dropped; segments are deleted once a checkpoint no longer needs them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  appendFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Rng } from '../../core/rng.ts';
import { ALIGN, SEGMENT_BYTES, SegmentReader, SegmentWriter } from './segments.ts';
import { SqliteStorage } from './sqlite.ts';
import { type JournalEntryInput, StorageError } from './types.ts';

const DIM = 100;

function delta(seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: DIM }, () => rng.normal());
}

function entry(i: number): JournalEntryInput {
  return {
    taskId: 't',
    idempotencyKey: `k${i}`,
    deviceId: 'd',
    assignmentId: `k${i}`,
    baseVersion: 0,
    numExamples: 1 + i,
    delta: delta(i),
    response: { i },
    acceptedAt: i,
  };
}

function setup(t: { after: (fn: () => Promise<void>) => void }, segmentBytes?: number, directIo?: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-seg-'));
  const opened: SqliteStorage[] = [];
  // Closed even when an assertion failed halfway (close is idempotent).
  t.after(async () => {
    for (const s of opened) await s.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const path = join(dir, 'orchard.db');
  const payloads = `${path}-payloads`;
  const open = async () => {
    const s = new SqliteStorage({
      path,
      ...(segmentBytes === undefined ? {} : { segmentBytes }),
      ...(directIo === undefined ? {} : { directIo }),
    });
    opened.push(s);
    await s.init();
    return s;
  };
  const segmentFiles = () =>
    readdirSync(payloads)
      .filter((f) => f.endsWith('.seg'))
      .sort();
  return { path, payloads, open, segmentFiles };
}

async function appendAll(s: SqliteStorage, from: number, to: number): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: to - from }, (_, k) => s.appendAccepted(entry(from + k))),
  );
  assert.deepEqual(
    results.map((r) => r.kind),
    results.map(() => 'appended'),
  );
}

function assertEntries(got: readonly { idempotencyKey: string; delta: Float32Array }[], keys: number[]) {
  assert.deepEqual(
    got.map((e) => e.idempotencyKey),
    keys.map((i) => `k${i}`),
  );
  // Bit-exact payloads, compared with an independent regeneration from the seed.
  for (const [n, e] of got.entries())
    assert.deepEqual(
      Buffer.from(e.delta.buffer, e.delta.byteOffset, e.delta.byteLength),
      Buffer.from(delta(keys[n] as number).buffer),
    );
}

/** The segment file and byte range of journal entry `seq`, read from the rows directly. */
function whereIs(path: string, seq: number): { seg: string; offset: number; length: number } {
  const db = new Database(path, { readonly: true });
  try {
    const row = db
      .prepare('SELECT seg, seg_offset AS offset, seg_length AS length FROM journal WHERE seq = ?')
      .get(seq) as { seg: string | null; offset: number; length: number } | undefined;
    assert.ok(row !== undefined && row.seg !== null, `entry ${seq} has its payload in a segment`);
    return { seg: row.seg, offset: row.offset, length: row.length };
  } finally {
    db.close();
  }
}

test('segments: payloads live in segment files, the rows hold no delta bytes, and read back bit-exact', async (t) => {
  const { path, open, segmentFiles } = setup(t);
  const s = await open();
  await appendAll(s, 0, 12);
  assertEntries(await s.journalSince('t', 0), [...Array(12).keys()]);
  await s.close();
  const db = new Database(path, { readonly: true });
  const inline = db.prepare('SELECT sum(length(delta)) AS n FROM journal').get() as { n: number };
  db.close();
  assert.equal(inline.n, 0);
  assert.equal(segmentFiles().length, 1);
  const reopened = await open();
  assertEntries(
    await reopened.journalSince('t', 4),
    [...Array(8).keys()].map((i) => i + 4),
  );
  await reopened.close();
});

test('segments: a torn tail (bytes no row points at) is ignored, and the next writer starts a new segment', async (t) => {
  const { payloads, open, segmentFiles } = setup(t);
  const s = await open();
  await appendAll(s, 0, 5);
  await s.close();
  const [file] = segmentFiles();
  assert.ok(file !== undefined);
  // What a crash mid-write leaves: half of a payload that was never committed (or answered).
  appendFileSync(join(payloads, file), Buffer.from(delta(99).buffer).subarray(0, 170));
  const after = await open();
  assertEntries(await after.journalSince('t', 0), [0, 1, 2, 3, 4]);
  await appendAll(after, 5, 7);
  assertEntries(await after.journalSince('t', 0), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(segmentFiles().length, 2, 'the new entries went to a fresh segment');
  await after.close();
});

test('segments: a missing segment is CORRUPT, not an empty journal', async (t) => {
  const { payloads, open, segmentFiles } = setup(t);
  const s = await open();
  await appendAll(s, 0, 3);
  await s.close();
  for (const f of segmentFiles()) rmSync(join(payloads, f));
  const after = await open();
  await assert.rejects(
    after.journalSince('t', 0),
    (err: unknown) =>
      err instanceof StorageError && err.code === 'CORRUPT' && /cannot be opened/.test(err.message),
  );
  await after.close();
});

for (const directIo of [false, true])
  test(`segments: a flipped byte is a checksum mismatch (CORRUPT); a truncated segment is CORRUPT (direct I/O ${directIo})`, async (t) => {
    const { path, payloads, open } = setup(t, undefined, directIo);
    const s = await open();
    // Buffered segments keep CRC-32; direct ones get checksum64 (src/core/checksum.ts).
    const mismatch = directIo && s.journalDirectIo ? /checksum mismatch/ : /CRC-32 mismatch/;
    await appendAll(s, 0, 4);
    await s.close();
    const at = whereIs(path, 3);
    const file = join(payloads, at.seg);
    const original = readFileSync(file);
    const flipped = Buffer.from(original);
    const byte = at.offset + Math.floor(at.length / 2);
    flipped[byte] = (flipped[byte] as number) ^ 0x10;
    writeFileSync(file, flipped);
    const after = await open();
    // The damaged entry is reported, not skipped; a read that does not include it is fine.
    await assert.rejects(
      after.journalSince('t', 0),
      (err: unknown) => err instanceof StorageError && err.code === 'CORRUPT' && mismatch.test(err.message),
    );
    assertEntries(await after.journalSince('t', 3), [3]); // seq 4 = key 3, after the damaged seq 3
    writeFileSync(file, original);
    truncateSync(file, at.offset + at.length - 1);
    await assert.rejects(
      after.journalSince('t', 2),
      (err: unknown) => err instanceof StorageError && err.code === 'CORRUPT' && /ends at/.test(err.message),
    );
    await after.close();
  });

for (const directIo of [false, true])
  test(`segments: a checkpoint that drops the journal prefix deletes the segments only it referenced (direct I/O ${directIo})`, async (t) => {
    // Room for two 400-byte payloads per segment (each takes a 4 KiB slot under direct I/O), so 10
    // appends (one at a time) fill 5 segments.
    const { open, segmentFiles } = setup(t, directIo ? 2 * ALIGN : 1024, directIo);
    const s = await open();
    if (directIo && !s.journalDirectIo) return t.skip('this filesystem refuses O_DIRECT');
    for (let i = 0; i < 10; i++) await appendAll(s, i, i + 1);
    assert.equal(segmentFiles().length, 5);
    await s.saveCheckpoint({
      taskId: 't',
      version: 1,
      params: new Float32Array(DIM),
      state: new Uint8Array(0),
      journalSeq: 6,
      createdAt: 1,
    });
    // Entries 7..10 (keys 6..9) live in the last two segments; the first three are gone.
    assert.equal(segmentFiles().length, 2);
    assertEntries(await s.journalSince('t', 6), [6, 7, 8, 9]);
    await s.saveCheckpoint({
      taskId: 't',
      version: 2,
      params: new Float32Array(DIM),
      state: new Uint8Array(0),
      journalSeq: 10,
      createdAt: 2,
    });
    // The writer's current segment stays until it is finished (close), then nothing is left.
    assert.ok(segmentFiles().length <= 1);
    await s.close();
    assert.equal(segmentFiles().length, 0);
  });

test('segments: a segment reclaimed under an idle writer fails its next append retryably; the retry lands', async (t) => {
  const { path, open } = setup(t);
  const s = await open();
  await appendAll(s, 0, 1);
  // Another process decided the segment was a dead writer's leftover (it sat idle past the limit).
  const db = new Database(path);
  db.prepare('DELETE FROM segments').run();
  db.close();
  await assert.rejects(
    s.appendAccepted(entry(1)),
    (err: unknown) => err instanceof StorageError && err.code === 'BACKEND_UNAVAILABLE',
  );
  await appendAll(s, 1, 2);
  assertEntries(await s.journalSince('t', 0), [0, 1]);
  await s.close();
});

test('segments: a host started with `--input-type=module -e` (ESM eval) still gets working writer threads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-seg-esm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const storageUrl = new URL('./sqlite.ts', import.meta.url).href;
  // The load script starts its server this way; the writer thread's CommonJS source must not
  // inherit --input-type=module (it did: every append failed with "writer is not running").
  const code = `
    import { SqliteStorage } from ${JSON.stringify(storageUrl)};
    const s = new SqliteStorage({ path: ${JSON.stringify(join(dir, 'orchard.db'))} });
    await s.init();
    const r = await s.appendAccepted({ taskId: 't', idempotencyKey: 'k', deviceId: 'd', assignmentId: 'k',
      baseVersion: 0, numExamples: 1, delta: new Float32Array([1, 2, 3]), response: {}, acceptedAt: 0 });
    const back = await s.journalSince('t', 0);
    await s.close();
    console.log(JSON.stringify({ kind: r.kind, n: back.length, delta: Array.from(back[0]?.delta ?? []) }));
  `;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', code],
      { timeout: 30_000 },
      (error, stdout, stderr) =>
        error === null ? resolve(stdout) : reject(new Error(`${error.message} ${stderr}`)),
    );
  });
  assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1) ?? '{}'), {
    kind: 'appended',
    n: 1,
    delta: [1, 2, 3],
  });
});

test('segments: a writer thread that died is replaced at the next append; what failed with it is retryable', async (t) => {
  const { open } = setup(t);
  const s = await open();
  await appendAll(s, 0, 2);
  const writer = (s as unknown as { segments: { worker: { terminate(): Promise<number> } | null } }).segments;
  assert.ok(writer.worker !== null);
  await writer.worker.terminate();
  await new Promise((r) => setImmediate(r));
  // The next append starts a fresh thread and lands; the journal holds every key once, in order.
  await appendAll(s, 2, 5);
  assertEntries(await s.journalSince('t', 0), [0, 1, 2, 3, 4]);
});

test('segments: under direct I/O each payload starts at a 4 KiB boundary, zero-padded, and reads back bit-exact', async (t) => {
  const { path, payloads, open, segmentFiles } = setup(t);
  const s = await open();
  if (process.platform !== 'linux') return t.skip('O_DIRECT is Linux only');
  // Linux filesystems that refuse O_DIRECT (old tmpfs) fall back; the CI disk must not.
  if (!s.journalDirectIo) return t.skip('this filesystem refuses O_DIRECT');
  await appendAll(s, 0, 5);
  await Promise.all([appendAll(s, 5, 9), appendAll(s, 9, 12)]);
  const file = readFileSync(join(payloads, segmentFiles()[0] as string));
  // 400-byte payloads, one per 4 KiB slot, in seq order (seq = key + 1).
  assert.equal(file.length, 12 * ALIGN);
  for (let i = 0; i < 12; i++) {
    const where = whereIs(path, i + 1);
    assert.equal(where.offset, i * ALIGN);
    assert.equal(where.length, DIM * 4);
    assert.deepEqual(file.subarray(where.offset, where.offset + where.length), Buffer.from(delta(i).buffer));
    assert.ok(file.subarray(where.offset + where.length, (i + 1) * ALIGN).every((b) => b === 0));
  }
  assertEntries(await s.journalSince('t', 0), [...Array(12).keys()]);
});

for (const directIo of [false, true])
  test(`segments: payloads larger than all of the writer's staging slots together round-trip (direct I/O ${directIo})`, async (t) => {
    const { open } = setup(t, undefined, directIo);
    const s = await open();
    // 4M floats = 16 MB each (the writer stages 3 × 4 MiB), two in one batch with a small one between
    // them: slots fill mid-payload and are reused while writes are in flight, and the pieces stay
    // contiguous in the file.
    const big = (seed: number, length: number) => {
      const rng = new Rng(seed);
      return Float32Array.from({ length }, () => rng.normal());
    };
    const sizes = [4_000_000, 3, 4_000_001];
    const results = await Promise.all(
      sizes.map((n, i) => s.appendAccepted({ ...entry(i), delta: big(100 + i, n) })),
    );
    assert.deepEqual(
      results.map((r) => r.kind),
      ['appended', 'appended', 'appended'],
    );
    const back = await s.journalSince('t', 0);
    assert.equal(back.length, 3);
    for (const [i, e] of back.entries())
      assert.deepEqual(
        Buffer.from(e.delta.buffer, e.delta.byteOffset, e.delta.byteLength),
        Buffer.from(big(100 + i, sizes[i] as number).buffer),
      );
  });

test('segments: rows checked by CRC-32 (buffered, or written before checksum64) and by checksum64 read back side by side', async (t) => {
  const { path, open } = setup(t);
  const before = new SqliteStorage({ path, directIo: false });
  await before.init();
  await appendAll(before, 0, 3);
  await before.close();
  const s = await open();
  if (!s.journalDirectIo) return t.skip('this filesystem refuses O_DIRECT');
  await appendAll(s, 3, 6);
  const db = new Database(path, { readonly: true });
  const kinds = db
    .prepare('SELECT seg_crc IS NOT NULL AS crc, seg_sum IS NOT NULL AS sum FROM journal ORDER BY seq')
    .all() as Array<{ crc: number; sum: number }>;
  db.close();
  assert.deepEqual(
    kinds.map((k) => `${k.crc}${k.sum}`),
    ['10', '10', '10', '01', '01', '01'],
  );
  assertEntries(await s.journalSince('t', 0), [...Array(6).keys()]);
});

test('segments: a direct write the filesystem refuses (EINVAL) goes through the page cache, bit-exact; later segments are buffered', async (t) => {
  if (process.platform !== 'linux') return t.skip('O_DIRECT is Linux only');
  const dir = mkdtempSync(join(tmpdir(), 'orchard-seg-einval-'));
  // Staging slots 16 bytes past a page boundary: O_DIRECT refuses such memory with EINVAL.
  const writer = new SegmentWriter(dir, SEGMENT_BYTES, true, 16);
  t.after(async () => {
    await writer.close();
    rmSync(dir, { recursive: true, force: true });
  });
  writer.open();
  if (!writer.directIo) return t.skip('this filesystem refuses O_DIRECT');
  const rng = new Rng(9);
  const payloads = [5000, 123_457, 3].map((n) => Uint8Array.from({ length: n }, () => rng.int(256)));
  const first = writer.write(payloads);
  assert.equal(first.segment.direct, true, 'the segment was opened with O_DIRECT');
  const checks = await first.written;
  assert.equal(writer.directIo, false, 'the refusal turned direct I/O off for new segments');
  const reader = new SegmentReader(dir);
  try {
    for (const [i, p] of payloads.entries()) {
      const back = reader.read(
        first.segment.name,
        first.offsets[i] as number,
        p.length,
        { kind: checks.kind, value: checks.values[i] as number },
        `payload ${i}`,
      );
      assert.deepEqual(back, p);
    }
  } finally {
    reader.close();
  }
  writer.retire(first.segment);
  const second = writer.write([payloads[0] as Uint8Array]);
  assert.equal(second.segment.direct, false);
  assert.equal((await second.written).kind, 'crc32');
});

/** A folded commit of one update (key `f<i>`) whose params and state are regenerated from seed `i`. */
function foldedCommit(i: number, version: number) {
  const params = delta(1000 + i);
  const state = new Uint8Array(delta(2000 + i).buffer, 0, 4 * DIM - 3); // not a multiple of 4
  return {
    taskId: 't',
    entries: [
      {
        idempotencyKey: `f${i}`,
        deviceId: 'd',
        assignmentId: `f${i}`,
        baseVersion: 0,
        numExamples: 1,
        response: { i },
        acceptedAt: i,
      },
    ],
    version,
    params,
    state,
    createdAt: i,
  };
}

/** The folded state's row, read directly: its inline bytes and where its payloads are. */
function foldedRow(path: string) {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare(
        'SELECT length(params) AS inlineParams, length(state) AS inlineState, seg, state_offset AS stateOffset, ' +
          'state_length AS stateLength FROM folded_states',
      )
      .get() as {
      inlineParams: number;
      inlineState: number;
      seg: string | null;
      stateOffset: number;
      stateLength: number;
    };
  } finally {
    db.close();
  }
}

function assertFolded(
  got: { params: Float32Array; state: Uint8Array; version: number } | null,
  i: number,
  version: number,
) {
  assert.ok(got !== null);
  const want = foldedCommit(i, version);
  assert.equal(got.version, version);
  assert.deepEqual(
    Buffer.from(got.params.buffer, got.params.byteOffset, got.params.byteLength),
    Buffer.from(want.params.buffer),
  );
  assert.deepEqual(Buffer.from(got.state), Buffer.from(want.state));
}

for (const directIo of [false, true])
  test(`segments: a folded state lives in a segment (the row holds no bytes), reads back bit-exact after reopen, and superseded segments are deleted (direct I/O ${directIo})`, async (t) => {
    // Under direct I/O each payload takes a 4 KiB slot: two commits per 16 KiB segment, else ~2.5.
    const { path, open, segmentFiles } = setup(t, directIo ? 4 * ALIGN : 2048, directIo);
    const s = await open();
    if (directIo && !s.journalDirectIo) return t.skip('this filesystem refuses O_DIRECT');
    for (let i = 0; i < 12; i++) {
      const c = foldedCommit(i, 1 + (i >> 2));
      const pending = s.commitFolded(c);
      // The storage has what it needs once the call returned: the caller may reuse its arrays.
      c.params.fill(Number.NaN);
      c.state.fill(0xff);
      assert.deepEqual(await pending, { kind: 'committed', seqs: [i + 1] });
      // The current state's segment and at most the writer's newer one; the older ones are gone.
      assert.ok(segmentFiles().length <= 2, `after commit ${i}: ${segmentFiles().length} segments`);
    }
    assertFolded(await s.foldedState('t'), 11, 3);
    assert.deepEqual(await s.lookupIdempotencyKey('t', 'f4'), { seq: 5, response: { i: 4 } });
    await s.close();
    const row = foldedRow(path);
    assert.equal(row.inlineParams + row.inlineState, 0);
    assert.deepEqual(segmentFiles(), [row.seg]);
    const reopened = await open();
    assertFolded(await reopened.foldedState('t'), 11, 3);
    // A journal append after it continues the seq sequence and does not take the state's segment away.
    await appendAll(reopened, 100, 101);
    assert.equal((await reopened.journalSince('t', 0))[0]?.seq, 13);
    assertFolded(await reopened.foldedState('t'), 11, 3);
    await reopened.close();
  });

test('segments: a folded state whose segment bytes were damaged or removed is CORRUPT, not a missing state', async (t) => {
  const { path, payloads, open } = setup(t);
  const s = await open();
  await s.commitFolded(foldedCommit(0, 1));
  await s.close();
  const row = foldedRow(path);
  assert.ok(row.seg !== null);
  const file = join(payloads, row.seg);
  const original = readFileSync(file);
  const flipped = Buffer.from(original);
  const byte = row.stateOffset + (row.stateLength >> 1);
  flipped[byte] = (flipped[byte] as number) ^ 0x01;
  writeFileSync(file, flipped);
  const after = await open();
  const corrupt = (pattern: RegExp) => (err: unknown) =>
    err instanceof StorageError && err.code === 'CORRUPT' && pattern.test(err.message);
  await assert.rejects(after.foldedState('t'), corrupt(/folded state of task t.*mismatch/));
  rmSync(file);
  await assert.rejects(after.foldedState('t'), corrupt(/cannot be opened/));
  writeFileSync(file, original);
  assertFolded(await after.foldedState('t'), 0, 1);
  await after.close();
});
