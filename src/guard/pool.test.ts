import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkConcurrency, mapPool } from './pool.ts';
import { GuardError } from './types.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const invalidOption = (e: unknown) => e instanceof GuardError && e.code === 'INVALID_OPTION';

/** A task that records how many calls are pending at once. */
function tracker() {
  const t = {
    inFlight: 0,
    max: 0,
    started: [] as number[],
    settled: [] as number[],
    async run<R>(i: number, ms: number, value: () => R): Promise<R> {
      t.started.push(i);
      t.inFlight++;
      t.max = Math.max(t.max, t.inFlight);
      try {
        await sleep(ms);
        return value();
      } finally {
        t.inFlight--;
        t.settled.push(i);
      }
    },
  };
  return t;
}

describe('mapPool', () => {
  it('never has more than `limit` calls pending, and uses all of them', async () => {
    for (const limit of [1, 2, 3, 5]) {
      const t = tracker();
      // Uneven durations so slots free up out of order.
      const items = Array.from({ length: 12 }, (_, i) => ((i * 7) % 5) * 3 + 1);
      await mapPool(items, limit, (ms, i) => t.run(i, ms, () => i));
      assert.equal(t.max, limit, `limit ${limit}: ${t.max} at once`);
      assert.equal(t.inFlight, 0);
      assert.deepEqual(
        [...t.started].sort((a, b) => a - b),
        items.map((_, i) => i),
      );
      // Items are started in input order.
      assert.deepEqual(
        t.started,
        items.map((_, i) => i),
      );
    }
  });

  it('returns results in input order, not completion order', async () => {
    const t = tracker();
    // The first items take longest, so they finish last.
    const items = ['a', 'b', 'c', 'd', 'e', 'f'];
    const out = await mapPool(items, 3, (s, i) => t.run(i, (items.length - i) * 4, () => s.toUpperCase()));
    assert.deepEqual(out, ['A', 'B', 'C', 'D', 'E', 'F']);
    assert.notDeepEqual(t.settled, [0, 1, 2, 3, 4, 5], 'completion order differed from input order');
  });

  it('more slots than items: each item runs once', async () => {
    let calls = 0;
    const out = await mapPool([1, 2], 10, (x) => {
      calls++;
      return x * 10;
    });
    assert.deepEqual(out, [10, 20]);
    assert.equal(calls, 2);
  });

  it('an empty input resolves to [] without calling fn', async () => {
    let calls = 0;
    const out = await mapPool([], 4, () => calls++);
    assert.deepEqual(out, []);
    assert.equal(calls, 0);
  });

  it('refuses a limit that is not an integer ≥ 1 with INVALID_OPTION, before any call', async () => {
    for (const limit of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      let calls = 0;
      await assert.rejects(
        mapPool([1, 2, 3], limit, () => calls++),
        invalidOption,
        `limit ${limit}`,
      );
      await assert.rejects(
        mapPool([], limit, () => calls++),
        invalidOption,
      );
      assert.equal(calls, 0);
    }
    let notArrayCalls = 0;
    await assert.rejects(
      mapPool('abc' as unknown as string[], 2, () => notArrayCalls++),
      invalidOption,
    );
    assert.equal(notArrayCalls, 0);
    assert.throws(() => checkConcurrency('2', '--concurrency'), /--concurrency must be a positive integer/);
    assert.equal(checkConcurrency(3), 3);
  });

  it('fail-fast: first error rejects, nothing new starts, running calls are aborted and settle first', async () => {
    const t = tracker();
    const boom = new Error('boom');
    const abortedSeen: number[] = [];
    const items = Array.from({ length: 20 }, (_, i) => i);
    let rejectedAt = -1;
    const p = mapPool(items, 3, (i, _idx, signal) =>
      t.run(i, i === 1 ? 5 : 40, () => {
        if (i === 1) throw boom;
        if (signal.aborted) abortedSeen.push(i);
        return i;
      }),
    );
    await assert.rejects(
      p.finally(() => {
        rejectedAt = t.settled.length;
      }),
      (e) => e === boom,
    );
    // Items 0 and 2 were running when 1 failed; item 3+ never started.
    assert.deepEqual(
      [...t.started].sort((a, b) => a - b),
      [0, 1, 2],
    );
    assert.deepEqual(abortedSeen.sort(), [0, 2]);
    // The pool settled only after every call it started had settled.
    assert.equal(rejectedAt, 3);
    assert.equal(t.inFlight, 0);
  });

  it('keeps the first error when several calls fail; sync throws count too', async () => {
    const first = new Error('first');
    const out = mapPool([0, 1, 2], 3, async (i) => {
      await sleep(i * 10);
      throw i === 0 ? first : new Error(`later ${i}`);
    });
    await assert.rejects(out, (e) => e === first);
    const syncErr = new GuardError('BAD_RESPONSE', 'sync');
    await assert.rejects(
      mapPool([1], 1, () => {
        throw syncErr;
      }),
      (e) => e === syncErr,
    );
    // Even a thrown undefined is a failure, not a result.
    await assert.rejects(
      mapPool([1], 1, () => Promise.reject(undefined)),
      (e) => e === undefined,
    );
  });

  it('forwards the caller signal to every call (already aborted or aborted later)', async () => {
    const pre = new AbortController();
    pre.abort(new Error('stop'));
    const seen = await mapPool([1, 2], 2, (_x, _i, s) => s.aborted);
    assert.deepEqual(seen, [false, false]);
    assert.deepEqual(await mapPool([1, 2], 1, (_x, _i, s) => s.aborted, { signal: pre.signal }), [
      true,
      true,
    ]);
    const later = new AbortController();
    const p = mapPool(
      [1, 2, 3],
      3,
      (_x, _i, s) =>
        new Promise<string>((resolve) =>
          s.addEventListener('abort', () => resolve(String(s.reason.message))),
        ),
      { signal: later.signal },
    );
    later.abort(new Error('caller'));
    assert.deepEqual(await p, ['caller', 'caller', 'caller']);
  });
});
