import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import {
  dirichletPartition,
  iidPartition,
  type Partition,
  partitionFromSpec,
  quantityPartition,
} from './partition.ts';

/** Checks the CSR invariants independently: offsets monotone, each index used exactly once, no empty client. */
function checkPartition(p: Partition, n: number, numClients: number): void {
  assert.equal(p.offsets.length, numClients + 1);
  assert.equal(p.offsets[0], 0);
  assert.equal(p.offsets[numClients], n);
  for (let k = 0; k < numClients; k++)
    assert.ok((p.offsets[k + 1] as number) > (p.offsets[k] as number), `client ${k} is empty`);
  const seen = new Uint8Array(n);
  for (const i of p.indices) {
    assert.ok(i >= 0 && i < n);
    assert.equal(seen[i], 0, `index ${i} used twice`);
    seen[i] = 1;
  }
  assert.equal(p.indices.length, n);
}

function labelsBalanced(n: number, numClasses: number): Int32Array {
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) y[i] = i % numClasses;
  return y;
}

function meanDistinctLabels(p: Partition, labels: Int32Array, numClients: number): number {
  let total = 0;
  for (let k = 0; k < numClients; k++) {
    const s = new Set<number>();
    for (let t = p.offsets[k] as number; t < (p.offsets[k + 1] as number); t++)
      s.add(labels[p.indices[t] as number] as number);
    total += s.size;
  }
  return total / numClients;
}

test('iid: valid, balanced sizes, deterministic per seed', () => {
  const p = iidPartition(1003, 10, new Rng(1));
  checkPartition(p, 1003, 10);
  for (let k = 0; k < 10; k++) {
    const size = (p.offsets[k + 1] as number) - (p.offsets[k] as number);
    assert.ok(size === 100 || size === 101);
  }
  assert.deepEqual(iidPartition(1003, 10, new Rng(1)), p);
  assert.notDeepEqual(iidPartition(1003, 10, new Rng(2)).indices, p.indices);
  checkPartition(iidPartition(5, 5, new Rng(1)), 5, 5);
});

test('dirichlet: valid for many alphas, including tiny alpha with many clients', () => {
  const labels = labelsBalanced(5000, 10);
  for (const alpha of [100, 1, 0.1, 0.01]) {
    for (const clients of [10, 400]) {
      const p = dirichletPartition(labels, 10, clients, alpha, new Rng(3));
      checkPartition(p, 5000, clients);
    }
  }
  const tight = dirichletPartition(labelsBalanced(50, 10), 10, 50, 0.05, new Rng(4));
  checkPartition(tight, 50, 50);
});

test('dirichlet: label skew grows as alpha falls', () => {
  const labels = labelsBalanced(10000, 10);
  const distinct = [1000, 1, 0.1].map((alpha) =>
    meanDistinctLabels(dirichletPartition(labels, 10, 50, alpha, new Rng(5)), labels, 50),
  );
  const [iidLike, mid, skewed] = distinct as [number, number, number];
  assert.ok(iidLike > 9.9, `alpha=1000: ${iidLike}`);
  assert.ok(mid < iidLike && skewed < mid, `distinct labels ${distinct.join(', ')}`);
  assert.ok(skewed < 6, `alpha=0.1: ${skewed}`);
  // IID partitions see every class on every client at this size.
  assert.ok(meanDistinctLabels(iidPartition(10000, 50, new Rng(5)), labels, 50) > 9.9);
  const p = dirichletPartition(labels, 10, 50, 0.3, new Rng(6));
  assert.deepEqual(dirichletPartition(labels, 10, 50, 0.3, new Rng(6)), p);
});

test('quantity: valid, sizes skewed as alpha falls, labels untouched', () => {
  const sizesOf = (p: Partition) =>
    Array.from(
      { length: p.offsets.length - 1 },
      (_, k) => (p.offsets[k + 1] as number) - (p.offsets[k] as number),
    );
  const spread = (alpha: number) => {
    const p = quantityPartition(20000, 100, alpha, new Rng(8));
    checkPartition(p, 20000, 100);
    const s = sizesOf(p);
    return Math.max(...s) / (20000 / 100);
  };
  assert.ok(spread(1000) < 1.3);
  assert.ok(spread(0.1) > 5);
  const tiny = quantityPartition(100, 100, 0.01, new Rng(1));
  checkPartition(tiny, 100, 100);
  assert.ok(sizesOf(tiny).every((s) => s === 1));
  assert.deepEqual(quantityPartition(500, 7, 0.5, new Rng(2)), quantityPartition(500, 7, 0.5, new Rng(2)));
});

test('impossible requests throw typed errors', () => {
  const labels = labelsBalanced(10, 2);
  assert.throws(() => iidPartition(10, 11, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => dirichletPartition(labels, 2, 11, 1, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => quantityPartition(10, 11, 1, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => iidPartition(10, 0, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => quantityPartition(10, 2, 0, new Rng(1)), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => dirichletPartition(labels, 1, 2, 1, new Rng(1)), { code: 'INVALID_ARGUMENT' });
});

test('partitionFromSpec dispatches', () => {
  const labels = labelsBalanced(300, 3);
  for (const spec of [
    { kind: 'iid' },
    { kind: 'dirichlet', alpha: 0.5 },
    { kind: 'quantity', alpha: 0.5 },
  ] as const)
    checkPartition(partitionFromSpec(spec, labels, 3, 20, new Rng(1)), 300, 20);
});
