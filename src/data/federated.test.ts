import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { federatedFromPool, selectRows, trainTestSplit } from './federated.ts';
import { iidPartition } from './partition.ts';
import type { BagExamples, DenseExamples } from './types.ts';

function densePool(n: number, dim: number): DenseExamples {
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  // Feature j of row i is i*10+j, so rows can be identified from their values.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) x[i * dim + j] = i * 10 + j;
    y[i] = i % 3;
  }
  return { kind: 'dense', n, dim, x, y };
}

test('selectRows gathers dense rows and targets', () => {
  const pool = { ...densePool(5, 2), targets: new Float32Array([0, 1, 2, 3, 4]) };
  const s = selectRows(pool, [4, 0]);
  assert.equal(s.kind, 'dense');
  if (s.kind !== 'dense') return;
  assert.deepEqual([...s.x], [40, 41, 0, 1]);
  assert.deepEqual([...s.y], [1, 0]);
  assert.deepEqual([...(s.targets ?? [])], [4, 0]);
  assert.throws(() => selectRows(pool, [5]), { code: 'INVALID_ARGUMENT' });
});

test('selectRows gathers bags with weights', () => {
  const bags: BagExamples = {
    kind: 'bags',
    n: 3,
    vocab: 10,
    offsets: new Int32Array([0, 2, 2, 5]),
    ids: new Int32Array([1, 2, 7, 8, 9]),
    weights: new Float32Array([1, 2, 3, 4, 5]),
    y: new Int32Array([0, 1, 0]),
  };
  const s = selectRows(bags, [2, 1, 0]);
  assert.equal(s.kind, 'bags');
  if (s.kind !== 'bags') return;
  assert.deepEqual([...s.offsets], [0, 3, 3, 5]);
  assert.deepEqual([...s.ids], [7, 8, 9, 1, 2]);
  assert.deepEqual([...(s.weights ?? [])], [3, 4, 5, 1, 2]);
  assert.deepEqual([...s.y], [0, 1, 0]);
});

test('federatedFromPool: clients own exactly their partition rows', () => {
  const pool = densePool(100, 3);
  const part = iidPartition(100, 7, new Rng(1));
  const ds = federatedFromPool('toy', pool, part, densePool(4, 3), 3);
  assert.equal(ds.numClients, 7);
  assert.equal(ds.inputDim, 3);
  const seen = new Set<number>();
  let total = 0;
  for (let k = 0; k < 7; k++) {
    const c = ds.client(k);
    assert.equal(c.n, ds.clientSize(k));
    if (c.kind !== 'dense') throw new Error('dense expected');
    for (let r = 0; r < c.n; r++) {
      const row: number = (c.x[r * 3] as number) / 10;
      assert.equal(c.y[r], row % 3);
      seen.add(row);
    }
    total += c.n;
  }
  assert.equal(total, 100);
  assert.equal(seen.size, 100);
  assert.deepEqual(ds.client(3), ds.client(3));
  assert.throws(() => ds.client(7), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => federatedFromPool('bad', pool, part, densePool(4, 2), 3), { code: 'INVALID_ARGUMENT' });
});

test('trainTestSplit: disjoint, complete, stratified, seeded', () => {
  const labels = new Int32Array(1000);
  for (let i = 0; i < 1000; i++) labels[i] = i < 900 ? 0 : 1;
  const s = trainTestSplit(labels, 0.2, new Rng(4));
  assert.equal(s.train.length + s.test.length, 1000);
  assert.equal(new Set([...s.train, ...s.test]).size, 1000);
  assert.equal([...s.test].filter((i) => labels[i] === 1).length, 20);
  assert.equal(s.test.length, 200);
  assert.deepEqual(trainTestSplit(labels, 0.2, new Rng(4)), s);
  assert.notDeepEqual(trainTestSplit(labels, 0.2, new Rng(5)).test, s.test);
  assert.throws(() => trainTestSplit(labels, 1, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => trainTestSplit(new Int32Array(1), 0.2, new Rng(1)), { code: 'DATA_INVALID' });
});
