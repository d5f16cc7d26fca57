/**
 * Pooled datasets made federated: a pool of examples plus a CSR partition. `client(k)` gathers the
 * client's rows into a fresh Examples on each call (a few KB per client for MNIST-sized data), so memory
 * stays at the pool size however many clients exist, and callers may keep or mutate what they get.
 */
import { invalidArgument, OrchardError } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import type { Partition } from './partition.ts';
import type { BagExamples, DenseExamples, Examples, FederatedDataset } from './types.ts';

/** The examples at `rows` (in that order), as a new Examples of the same kind. */
export function selectRows(data: Examples, rows: ArrayLike<number>): Examples {
  const n = rows.length;
  for (let t = 0; t < n; t++) {
    const i = rows[t] as number;
    if (!Number.isInteger(i) || i < 0 || i >= data.n)
      throw invalidArgument(`row ${i} outside [0, ${data.n})`);
  }
  if (data.kind === 'dense') return selectDense(data, rows);
  return selectBags(data, rows);
}

function selectDense(data: DenseExamples, rows: ArrayLike<number>): DenseExamples {
  const n = rows.length;
  const dim = data.dim;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  const outputs = data.targets ? data.targets.length / data.n : 0;
  const targets = data.targets ? new Float32Array(n * outputs) : undefined;
  for (let t = 0; t < n; t++) {
    const i = rows[t] as number;
    x.set(data.x.subarray(i * dim, (i + 1) * dim), t * dim);
    y[t] = data.y[i] as number;
    if (targets && data.targets)
      targets.set(data.targets.subarray(i * outputs, (i + 1) * outputs), t * outputs);
  }
  return targets ? { kind: 'dense', n, dim, x, y, targets } : { kind: 'dense', n, dim, x, y };
}

function selectBags(data: BagExamples, rows: ArrayLike<number>): BagExamples {
  const n = rows.length;
  const offsets = new Int32Array(n + 1);
  for (let t = 0; t < n; t++) {
    const i = rows[t] as number;
    offsets[t + 1] = (offsets[t] as number) + (data.offsets[i + 1] as number) - (data.offsets[i] as number);
  }
  const total = offsets[n] as number;
  const ids = new Int32Array(total);
  const weights = data.weights ? new Float32Array(total) : undefined;
  const y = new Int32Array(n);
  for (let t = 0; t < n; t++) {
    const i = rows[t] as number;
    const from = data.offsets[i] as number;
    const to = data.offsets[i + 1] as number;
    ids.set(data.ids.subarray(from, to), offsets[t] as number);
    if (weights && data.weights) weights.set(data.weights.subarray(from, to), offsets[t] as number);
    y[t] = data.y[i] as number;
  }
  const base = { kind: 'bags' as const, n, vocab: data.vocab, offsets, ids, y };
  return weights ? { ...base, weights } : base;
}

/** A FederatedDataset over `pool`, client k owning pool rows partition.indices[offsets[k] .. offsets[k+1]). */
export function federatedFromPool(
  name: string,
  pool: Examples,
  partition: Partition,
  test: Examples,
  numClasses: number,
): FederatedDataset {
  const numClients = partition.offsets.length - 1;
  if (numClients < 1) throw invalidArgument('partition has no clients');
  if ((partition.offsets[numClients] as number) !== partition.indices.length)
    throw invalidArgument('partition offsets do not cover its indices');
  for (const i of partition.indices)
    if (i < 0 || i >= pool.n) throw invalidArgument(`partition index ${i} outside the pool of ${pool.n}`);
  if (pool.kind !== test.kind) throw invalidArgument(`pool is ${pool.kind} but test set is ${test.kind}`);
  const inputDim = pool.kind === 'dense' ? pool.dim : pool.vocab;
  const testDim = test.kind === 'dense' ? test.dim : test.vocab;
  if (testDim !== inputDim)
    throw invalidArgument(`test set input size ${testDim} differs from pool ${inputDim}`);
  const check = (k: number) => {
    if (!Number.isInteger(k) || k < 0 || k >= numClients)
      throw invalidArgument(`client index ${k} outside [0, ${numClients})`);
  };
  return {
    name,
    numClients,
    numClasses,
    inputKind: pool.kind,
    inputDim,
    clientSize(k) {
      check(k);
      return (partition.offsets[k + 1] as number) - (partition.offsets[k] as number);
    },
    client(k) {
      check(k);
      return selectRows(pool, partition.indices.subarray(partition.offsets[k], partition.offsets[k + 1]));
    },
    testSet: () => test,
  };
}

export interface Split {
  readonly train: Int32Array;
  readonly test: Int32Array;
}

/**
 * Seeded train/test split of row indices. Stratified: each class contributes round(testFraction · n_c)
 * examples to the test side, so class balance is the same on both sides (to rounding).
 */
export function trainTestSplit(labels: Int32Array, testFraction: number, rng: Rng): Split {
  if (!(testFraction > 0 && testFraction < 1))
    throw invalidArgument(`testFraction must be in (0, 1), got ${testFraction}`);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] as number;
    let list = byClass.get(y);
    if (!list) {
      list = [];
      byClass.set(y, list);
    }
    list.push(i);
  }
  const train: number[] = [];
  const test: number[] = [];
  for (const y of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = rng.shuffle(byClass.get(y) as number[]);
    const nTest = Math.round(testFraction * members.length);
    for (let t = 0; t < members.length; t++) (t < nTest ? test : train).push(members[t] as number);
  }
  if (train.length === 0 || test.length === 0)
    throw new OrchardError(
      'DATA_INVALID',
      `a ${testFraction} test split of ${labels.length} examples leaves one side empty`,
    );
  return { train: Int32Array.from(rng.shuffle(train)), test: Int32Array.from(rng.shuffle(test)) };
}
