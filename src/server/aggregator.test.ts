/**
 * The aggregator's deduplication and replay cache, driven directly (no HTTP) with a fake clock and
 * a target that counts what reaches it: an assignment is applied at most once whatever spelling of
 * its id comes back, a replay gets the first answer, and the cache of answers holds only the
 * assignments that have not lapsed (about rate × TTL entries), however long the server runs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LocalAdmissionCounter } from './admission.ts';
import { type AggregationTarget, Aggregator } from './aggregator.ts';
import { AssignmentSigner } from './assignment.ts';
import type { FoldInput } from './coordinator.ts';
import { ApiError } from './errors.ts';
import { encodeFrame, FRAME_KIND_UPDATE, type UpdateResponse } from './protocol.ts';
import type { Storage } from './storage/types.ts';
import { parseTaskSpec } from './task.ts';

const TTL_MS = 60_000;
const spec = parseTaskSpec({
  taskId: 'dedup',
  modelInput: { inputKind: 'dense', inputDim: 4, numClasses: 3 },
  model: { kind: 'softmax' },
  strategy: { kind: 'fedbuff', bufferSize: 2, staleness: { kind: 'constant' }, maxStaleness: 100 },
  assignmentTtlMs: TTL_MS,
  evalEvery: 0,
});
const NUM_PARAMS = 15;

function setup(start: number) {
  const clock = { now: start };
  const applied: FoldInput[] = [];
  const target: AggregationTarget = {
    numParams: NUM_PARAMS,
    runtime: { spec },
    journalDedups: false,
    countRejection: () => {},
    submit: async (input) => {
      applied.push(input);
      return { accepted: true, duplicate: false, staleness: 0, version: applied.length };
    },
  };
  // Every assignment below is issued after the aggregator started, so no storage read is needed.
  const storage = {
    lookupIdempotencyKey: async () => assert.fail('no storage read expected'),
  } as unknown as Storage;
  const signer = new AssignmentSigner(new Uint8Array(32).fill(7));
  const aggregator = new Aggregator({
    storage,
    coordinator: (taskId) => (taskId === 'dedup' ? target : null),
    admission: new LocalAdmissionCounter(() => clock.now),
    signer,
    now: () => clock.now,
  });
  clock.now += 1;
  const assign = (deviceId: string) =>
    signer.sign({ taskId: 'dedup', deviceId, version: 0, deadline: clock.now + TTL_MS });
  const upload = (deviceId: string, assignmentId: string): Promise<UpdateResponse> =>
    aggregator.submit(
      deviceId,
      'dedup',
      assignmentId,
      encodeFrame(
        FRAME_KIND_UPDATE,
        { taskId: 'dedup', assignmentId, baseVersion: 0, numExamples: 3 },
        new Float32Array(NUM_PARAMS).fill(0.01),
      ),
    );
  return { clock, applied, aggregator, assign, upload };
}

/** Other spellings of the same id that base64url decoding reads as the same MAC bytes. */
function variants(id: string): string[] {
  const dot = id.indexOf('.');
  const payload = id.slice(0, dot);
  const mac = id.slice(dot + 1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(mac.at(-1) as string);
  // 16 bytes are 22 characters carrying 132 bits: the last character's low 4 bits are ignored.
  const flipped = `${mac.slice(0, -1)}${alphabet[last ^ 1]}`;
  const out = [
    `${payload}.${flipped}`,
    `${payload}.${mac}==`,
    `${payload}.${mac.slice(0, 4)} ${mac.slice(4)}`,
  ];
  for (const v of out)
    assert.deepEqual(
      Buffer.from(v.slice(dot + 1), 'base64url'),
      Buffer.from(mac, 'base64url'),
      `${v} decodes like the original`,
    );
  return out;
}

test('a variant spelling of an applied assignment id is refused and applies nothing', async () => {
  const { applied, assign, upload } = setup(1_000_000);
  const id = assign('device-1');
  const first = await upload('device-1', id);
  assert.equal(first.duplicate, false);
  for (const variant of variants(id)) {
    await assert.rejects(
      upload('device-1', variant),
      (e: unknown) => e instanceof ApiError && e.code === 'not_assigned',
    );
  }
  const replay = await upload('device-1', id);
  assert.deepEqual(replay, { ...first, duplicate: true });
  assert.equal(applied.length, 1);
});

test('the replay cache answers replays until the assignment lapses and holds ≤ rate × TTL answers', async () => {
  const start = 1_000_000;
  const { clock, applied, aggregator, assign, upload } = setup(start);
  // 2 uploads a second for 10 TTLs: 1,200 answered, at most 2 × (TTL + one 10 s bucket) = 140 kept.
  const ids: string[] = [];
  let maxSize = 0;
  for (let i = 0; i < 1200; i++) {
    clock.now = start + 1 + i * 500;
    const id = assign(`device-${i}`);
    ids.push(id);
    const answer = await upload(`device-${i}`, id);
    assert.equal(answer.version, i + 1);
    maxSize = Math.max(maxSize, aggregator.replayCacheSize);
    // A replay of an assignment that has not lapsed yet gets its first answer, applied once.
    const older = Math.max(0, i - 110);
    const replay = await upload(`device-${older}`, ids[older] as string);
    assert.deepEqual(replay, { accepted: true, duplicate: true, staleness: 0, version: older + 1 });
  }
  assert.equal(applied.length, 1200);
  assert.ok(maxSize >= 110, `the cache kept ${maxSize} answers, fewer than the unlapsed ones`);
  assert.ok(maxSize <= (2 * (TTL_MS + 10_000)) / 1000, `the cache grew to ${maxSize} answers`);
});

test('the signer itself verifies only the exact spelling it issued', () => {
  const signer = new AssignmentSigner(new Uint8Array(32).fill(7));
  const id = signer.sign({ taskId: 't', deviceId: 'd', version: 3, deadline: 5_000 });
  assert.equal(signer.verify(id)?.version, 3);
  for (const variant of variants(id)) assert.equal(signer.verify(variant), null, variant);
});
