import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { EventQueue } from './queue.ts';

interface Ev {
  time: number;
  seq: number;
  kind: number;
  a: number;
  b: number;
}

/** Naive reference: a list scanned for the minimum (time, seq) on every pop. */
function naivePop(list: Ev[]): Ev | undefined {
  if (list.length === 0) return undefined;
  let best = 0;
  for (let i = 1; i < list.length; i++) {
    const e = list[i] as Ev;
    const m = list[best] as Ev;
    if (e.time < m.time || (e.time === m.time && e.seq < m.seq)) best = i;
  }
  return list.splice(best, 1)[0];
}

test('pops in (time, insertion) order, matching a naive reference under interleaved push/pop', () => {
  const rng = new Rng(7);
  const q = new EventQueue(4); // small, so growth is exercised
  const ref: Ev[] = [];
  let seq = 0;
  for (let step = 0; step < 20000; step++) {
    if (rng.next() < 0.55) {
      // Coarse times force many ties, which must break by insertion order.
      const e = { time: rng.int(50), seq: seq++, kind: rng.int(4), a: rng.int(1000), b: step };
      q.push(e.time, e.kind, e.a, e.b);
      ref.push(e);
    } else {
      const want = naivePop(ref);
      const got = q.pop();
      assert.equal(got, want !== undefined);
      if (want !== undefined) {
        assert.deepEqual([q.time, q.kind, q.a, q.b], [want.time, want.kind, want.a, want.b]);
      }
    }
    assert.equal(q.size, ref.length);
  }
  while (ref.length > 0) {
    const want = naivePop(ref) as Ev;
    assert.ok(q.pop());
    assert.deepEqual([q.time, q.b], [want.time, want.b]);
  }
  assert.equal(q.pop(), false);
  assert.equal(q.peekTime(), Number.POSITIVE_INFINITY);
});

test('peekTime reports the earliest pending time; clear empties the queue', () => {
  const q = new EventQueue();
  q.push(5, 0, 0, 0);
  q.push(2.5, 1, 0, 0);
  q.push(Number.POSITIVE_INFINITY, 2, 0, 0);
  assert.equal(q.peekTime(), 2.5);
  q.clear();
  assert.equal(q.size, 0);
  assert.equal(q.pop(), false);
  q.push(1, 3, 9, 8);
  assert.ok(q.pop());
  assert.deepEqual([q.time, q.kind, q.a, q.b], [1, 3, 9, 8]);
});

test('NaN times are rejected with a typed error and leave the queue unchanged', () => {
  const q = new EventQueue();
  q.push(1, 0, 0, 0);
  assert.throws(() => q.push(Number.NaN, 0, 0, 0), OrchardError);
  assert.equal(q.size, 1);
});
