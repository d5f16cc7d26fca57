import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createDataset } from './index.ts';
import { DatasetSpecSchema } from './spec.ts';

test('synthetic spec with defaults', () => {
  const ds = createDataset(DatasetSpecSchema.parse({ kind: 'synthetic', numClients: 50 }), 1);
  assert.equal(ds.numClients, 50);
  assert.equal(ds.inputDim, 60);
  assert.equal(ds.numClasses, 10);
  assert.equal(ds.client(3).n, 20);
  assert.equal(ds.testSet().n, 2000);
});

test('mnist spec: disjoint train/test covering all 10,000, dirichlet skew, seeded', () => {
  const spec = DatasetSpecSchema.parse({
    kind: 'mnist',
    numClients: 100,
    partition: { kind: 'dirichlet', alpha: 0.1 },
  });
  const ds = createDataset(spec, 7);
  assert.equal(ds.numClients, 100);
  assert.equal(ds.inputDim, 784);
  const testN = ds.testSet().n;
  let trainN = 0;
  let distinct = 0;
  for (let k = 0; k < 100; k++) {
    const c = ds.client(k);
    assert.equal(c.n, ds.clientSize(k));
    assert.ok(c.n >= 1);
    trainN += c.n;
    distinct += new Set(c.y).size;
  }
  assert.equal(trainN + testN, 10000);
  assert.ok(Math.abs(testN - 1500) <= 10);
  assert.ok(distinct / 100 < 6, `mean distinct labels ${distinct / 100}`);
  assert.deepEqual(createDataset(spec, 7).client(5), ds.client(5));
  assert.notDeepEqual(createDataset(spec, 8).client(5).y, ds.client(5).y);
});

test('spam spec: bag inputs, ~20% test', () => {
  const ds = createDataset(DatasetSpecSchema.parse({ kind: 'spam', numClients: 30, buckets: 1024 }), 2);
  assert.equal(ds.inputKind, 'bags');
  assert.equal(ds.inputDim, 1024);
  assert.equal(ds.numClasses, 2);
  assert.ok(Math.abs(ds.testSet().n - 1209) <= 2);
  let total = 0;
  for (let k = 0; k < 30; k++) total += ds.clientSize(k);
  assert.equal(total + ds.testSet().n, 6046);
});

test('file spec', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-index-'));
  try {
    const path = join(dir, 'd.csv');
    writeFileSync(path, 'client_id,label,x\na,0,1\na,1,2\nb,0,3\nb,1,4\n');
    const ds = createDataset(DatasetSpecSchema.parse({ kind: 'file', path, testFraction: 0.5 }), 1);
    assert.equal(ds.numClients, 2);
    assert.equal(ds.testSet().n, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
