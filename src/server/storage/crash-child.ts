/**
 * Child process for crash.test.ts: plays a minimal coordinator against a storage URL. It recovers
 * the model from the last checkpoint (or the folded state, whichever has the larger journalSeq)
 * plus the journal, re-sends a few earlier keys (as a client retrying after a lost answer would),
 * then stores new updates forever, checkpointing every few, printing `ACK <kind> <seq> <key>` only
 * after each update's write resolved. The parent kill -9s it. Mode `journal`: one appendAccepted
 * per update. Mode `folded`: commitFolded with the model after the update, new keys in groups of
 * one to three (retries alone, so that a duplicate holds up no other key).
 *
 * Update i has the integer-valued delta deltaFor(i), so float32 sums are exact in any order and
 * the recovered model can be checked against a hand-computed sum.
 */
import { pathToFileURL } from 'node:url';
import { openStorage } from './index.ts';

export const CRASH_TASK = 'crash';
export const DIM = 3;

export function deltaFor(i: number): Float32Array {
  return new Float32Array([1, i, (i % 5) - 2]);
}

async function main(): Promise<void> {
  const [url, firstKeyArg, retryFromArg, mode = 'journal'] = process.argv.slice(2);
  if (!url || firstKeyArg === undefined || retryFromArg === undefined) {
    throw new Error('usage: crash-child <storage-url> <firstKey> <retryFrom> [journal|folded]');
  }
  const firstKey = Number(firstKeyArg);
  const retryFrom = Number(retryFromArg);
  const storage = await openStorage(url);
  const checkpoint = await storage.latestCheckpoint(CRASH_TASK);
  const folded = await storage.foldedState(CRASH_TASK);
  const cp = folded !== null && folded.journalSeq > (checkpoint?.journalSeq ?? 0) ? folded : checkpoint;
  const model = cp ? Float32Array.from(cp.params) : new Float32Array(DIM);
  let version = cp?.version ?? 0;
  let lastSeq = cp?.journalSeq ?? 0;
  for (const e of await storage.journalSince(CRASH_TASK, lastSeq)) {
    for (let j = 0; j < DIM; j++) model[j] = (model[j] ?? 0) + (e.delta[j] ?? 0);
    lastSeq = e.seq;
  }
  let sinceCheckpoint = 0;
  const send = async (i: number) => {
    const delta = deltaFor(i);
    const r = await storage.appendAccepted({
      taskId: CRASH_TASK,
      idempotencyKey: `k${i}`,
      deviceId: `d${i % 7}`,
      assignmentId: `a${i}`,
      baseVersion: version,
      numExamples: 1,
      delta,
      response: { accepted: i },
      acceptedAt: Date.now(),
    });
    process.stdout.write(`ACK ${r.kind} ${r.seq} ${i}\n`);
    if (r.kind === 'appended') {
      for (let j = 0; j < DIM; j++) model[j] = (model[j] ?? 0) + (delta[j] ?? 0);
      lastSeq = r.seq;
      await checkpointEvery5(1);
    }
  };
  const checkpointEvery5 = async (stored: number) => {
    sinceCheckpoint += stored;
    if (sinceCheckpoint < 5) return;
    sinceCheckpoint = 0;
    version++;
    await storage.saveCheckpoint({
      taskId: CRASH_TASK,
      version,
      params: model,
      state: new Uint8Array([version & 0xff]),
      journalSeq: lastSeq,
      createdAt: Date.now(),
    });
  };
  const commit = async (keys: readonly number[]) => {
    const after = Float32Array.from(model);
    for (const i of keys) {
      const delta = deltaFor(i);
      for (let j = 0; j < DIM; j++) after[j] = (after[j] ?? 0) + (delta[j] ?? 0);
    }
    const r = await storage.commitFolded({
      taskId: CRASH_TASK,
      entries: keys.map((i) => ({
        idempotencyKey: `k${i}`,
        deviceId: `d${i % 7}`,
        assignmentId: `a${i}`,
        baseVersion: version,
        numExamples: 1,
        response: { accepted: i },
        acceptedAt: Date.now(),
      })),
      version,
      params: after,
      state: new Uint8Array([version & 0xff, keys.length]),
      createdAt: Date.now(),
    });
    if (r.kind === 'duplicate') {
      process.stdout.write(`ACK duplicate ${r.seq} ${keys[r.index]}\n`);
      return;
    }
    for (const [n, i] of keys.entries()) process.stdout.write(`ACK appended ${r.seqs[n]} ${i}\n`);
    model.set(after);
    lastSeq = r.seqs.at(-1) ?? lastSeq;
    await checkpointEvery5(keys.length);
  };
  if (mode === 'folded') {
    for (let i = retryFrom; i < firstKey; i++) await commit([i]);
    for (let i = firstKey; ; ) {
      const size = 1 + (i % 3);
      await commit(Array.from({ length: size }, (_, n) => i + n));
      i += size;
    }
  }
  for (let i = retryFrom; i < firstKey; i++) await send(i);
  for (let i = firstKey; ; i++) await send(i);
}

// Run only as a script (the test imports deltaFor from here).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
