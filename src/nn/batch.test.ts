import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import type { BagExamples, DenseExamples } from '../data/types.ts';
import { BatchScratch, sliceRows, takeRows } from './batch.ts';

const dense: DenseExamples = {
  kind: 'dense',
  n: 4,
  dim: 2,
  x: Float32Array.from([0, 1, 10, 11, 20, 21, 30, 31]),
  y: Int32Array.from([0, 1, 2, 3]),
  targets: Float32Array.from([0.5, 1.5, 2.5, 3.5]),
};

const bags: BagExamples = {
  kind: 'bags',
  n: 3,
  vocab: 9,
  offsets: Int32Array.from([0, 2, 2, 5]),
  ids: Int32Array.from([1, 2, 6, 7, 8]),
  weights: Float32Array.from([1, 2, 3, 4, 5]),
  y: Int32Array.from([5, 6, 7]),
};

test('takeRows gathers dense rows, labels and targets in index order', () => {
  const b = takeRows(dense, [3, 0, 2, 1], 1, 3);
  assert.equal(b.kind, 'dense');
  if (b.kind !== 'dense') return;
  assert.equal(b.n, 2);
  assert.deepEqual([...b.x], [0, 1, 20, 21]);
  assert.deepEqual([...b.y], [0, 2]);
  assert.deepEqual([...(b.targets ?? [])], [0.5, 2.5]);
});

test('takeRows reuses scratch buffers across steps', () => {
  const scratch = new BatchScratch();
  const a = takeRows(dense, [0, 1, 2, 3], 0, 2, scratch);
  const bufX = scratch.x;
  const b = takeRows(dense, [0, 1, 2, 3], 2, 4, scratch);
  assert.equal(scratch.x, bufX, 'no new buffer for a same-size batch');
  assert.equal(a, b, 'same batch object reused');
  if (b.kind === 'dense') assert.deepEqual([...b.x], [20, 21, 30, 31]);
});

test('takeRows gathers bags with weights, rebasing offsets to 0', () => {
  const b = takeRows(bags, Int32Array.from([2, 1, 0]), 0, 3);
  assert.equal(b.kind, 'bags');
  if (b.kind !== 'bags') return;
  assert.deepEqual([...b.offsets], [0, 3, 3, 5]);
  assert.deepEqual([...b.ids], [6, 7, 8, 1, 2]);
  assert.deepEqual([...(b.weights ?? [])], [3, 4, 5, 1, 2]);
  assert.deepEqual([...b.y], [7, 6, 5]);
});

test('sliceRows is zero-copy for dense data and keeps absolute bag offsets', () => {
  const s = sliceRows(dense, 1, 3);
  if (s.kind !== 'dense') throw new Error('kind');
  assert.equal(s.x.buffer, dense.x.buffer);
  assert.deepEqual([...s.x], [10, 11, 20, 21]);
  assert.deepEqual([...(s.targets ?? [])], [1.5, 2.5]);
  const t = sliceRows(bags, 2, 3);
  if (t.kind !== 'bags') throw new Error('kind');
  assert.deepEqual([...t.offsets], [2, 5]);
  assert.equal(t.ids, bags.ids);
});

test('bad ranges and indices are INVALID_ARGUMENT', () => {
  const bad = (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT';
  assert.throws(() => takeRows(dense, [0, 9], 0, 2), bad);
  assert.throws(() => takeRows(dense, [0, 1], 1, 3), bad);
  assert.throws(() => sliceRows(dense, 3, 2), bad);
  assert.throws(() => sliceRows(dense, 0, 5), bad);
});
