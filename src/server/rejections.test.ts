import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeCounts, RejectionTally } from './rejections.ts';
import type { Storage } from './storage/types.ts';

/** A storage holding only rejection counts; `failing` makes adds throw; `gate` holds adds back. */
function fakeStorage() {
  const stored: Record<string, number> = {};
  const state = { failing: false, gate: null as Promise<void> | null, adds: 0 };
  const storage = {
    async addRejections(_taskId: string, counts: Record<string, number>) {
      if (state.gate !== null) await state.gate;
      if (state.failing) throw new Error('storage down');
      state.adds++;
      for (const [r, n] of Object.entries(counts)) stored[r] = (stored[r] ?? 0) + n;
    },
    async rejections() {
      return { ...stored };
    },
  } as unknown as Storage;
  return { storage, stored, state };
}

test('rejection tally: counts reach the storage in one add per flush; totals never miss or double a count', async () => {
  const { storage, stored, state } = fakeStorage();
  const tally = new RejectionTally(storage, 't', 60_000);
  tally.count('nan');
  tally.count('nan');
  tally.count('shape');
  assert.deepEqual(stored, {});
  assert.deepEqual(await tally.totals(), { nan: 2, shape: 1 }); // pending, not stored yet
  await tally.flush();
  assert.deepEqual(stored, { nan: 2, shape: 1 });
  assert.equal(state.adds, 1);
  assert.deepEqual(await tally.totals(), { nan: 2, shape: 1 }); // stored, not pending any more

  // A batch on its way to the storage: totals wait for it instead of missing it.
  let open = () => {};
  state.gate = new Promise<void>((r) => {
    open = r;
  });
  tally.count('stale');
  const flushing = tally.flush();
  const totals = tally.totals();
  open();
  state.gate = null;
  await flushing;
  assert.deepEqual(await totals, { nan: 2, shape: 1, stale: 1 });
});

test('rejection tally: a failed add keeps its counts for the next flush; close adds what is pending', async () => {
  const { storage, stored, state } = fakeStorage();
  const tally = new RejectionTally(storage, 't', 60_000);
  state.failing = true;
  tally.count('nan');
  await tally.flush();
  assert.deepEqual(stored, {});
  tally.count('nan');
  assert.deepEqual(await tally.totals(), { nan: 2 });
  state.failing = false;
  await tally.close();
  assert.deepEqual(stored, { nan: 2 });
});

test('rejection tally: the timer flushes on its own', async () => {
  const { storage, stored } = fakeStorage();
  const tally = new RejectionTally(storage, 't', 20);
  tally.count('finished');
  const deadline = Date.now() + 2000;
  while (stored.finished !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(stored, { finished: 1 });
  await tally.close();
});

test('mergeCounts sums reason by reason', () => {
  assert.deepEqual(mergeCounts({ a: 1, b: 2 }, {}, { b: 3, c: 4 }), { a: 1, b: 5, c: 4 });
});
