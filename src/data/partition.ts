/**
 * Partitioners: split a pool of n examples over clients. The result is CSR: client k owns
 * indices[offsets[k] .. offsets[k+1]). Every example is used exactly once and every client gets at least
 * one example. All randomness comes from the Rng passed in, so a partition is a pure function of its seed.
 */
import { invalidArgument } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import type { PartitionSpec } from './spec.ts';

export interface Partition {
  /** numClients + 1 entries, offsets[0] = 0, offsets[numClients] = n. */
  readonly offsets: Int32Array;
  readonly indices: Int32Array;
}

function checkCounts(n: number, numClients: number): void {
  if (!Number.isInteger(numClients) || numClients < 1)
    throw invalidArgument(`numClients must be an integer >= 1, got ${numClients}`);
  if (numClients > n)
    throw invalidArgument(`cannot give ${numClients} clients at least one example each from ${n} examples`);
}

/** CSR from per-example owners; within a client, examples appear in random order (seeded). */
function fromOwners(owner: Int32Array, numClients: number, rng: Rng): Partition {
  const n = owner.length;
  const offsets = new Int32Array(numClients + 1);
  for (let i = 0; i < n; i++) {
    const slot = (owner[i] as number) + 1;
    offsets[slot] = (offsets[slot] as number) + 1;
  }
  for (let k = 0; k < numClients; k++) offsets[k + 1] = (offsets[k + 1] as number) + (offsets[k] as number);
  const cursor = offsets.slice(0, numClients);
  const indices = new Int32Array(n);
  // Visiting examples in a random order shuffles each client's list: pools are often sorted by label.
  const order = rng.permutation(n);
  for (let t = 0; t < n; t++) {
    const i = order[t] as number;
    const k = owner[i] as number;
    indices[cursor[k] as number] = i;
    cursor[k] = (cursor[k] as number) + 1;
  }
  return { offsets, indices };
}

/** Contiguous chunks of a permutation with the given sizes. */
function fromSizes(sizes: Int32Array, n: number, rng: Rng): Partition {
  const offsets = new Int32Array(sizes.length + 1);
  for (let k = 0; k < sizes.length; k++) offsets[k + 1] = (offsets[k] as number) + (sizes[k] as number);
  return { offsets, indices: rng.permutation(n) };
}

/** IID: a random permutation cut into numClients chunks whose sizes differ by at most one. */
export function iidPartition(n: number, numClients: number, rng: Rng): Partition {
  checkCounts(n, numClients);
  const sizes = new Int32Array(numClients);
  for (let k = 0; k < numClients; k++)
    sizes[k] = Math.floor(((k + 1) * n) / numClients) - Math.floor((k * n) / numClients);
  return fromSizes(sizes, n, rng);
}

/**
 * Splits `total` into integer counts proportional to `p` (largest-remainder rounding), so the counts
 * sum exactly to `total`.
 */
function apportion(p: Float64Array, total: number): Int32Array {
  const counts = new Int32Array(p.length);
  const remainders: Array<[number, number]> = [];
  let used = 0;
  for (let k = 0; k < p.length; k++) {
    const exact = (p[k] as number) * total;
    const whole = Math.floor(exact);
    counts[k] = whole;
    used += whole;
    remainders.push([exact - whole, k]);
  }
  // Ties broken by index so the result is a deterministic function of p.
  remainders.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let r = 0; r < total - used; r++) {
    const k = (remainders[r] as [number, number])[1];
    counts[k] = (counts[k] as number) + 1;
  }
  return counts;
}

/**
 * Quantity skew: client sizes are 1 + a Dirichlet(alpha)-proportional share of the remaining
 * n − numClients examples (so every client has at least one); labels stay IID.
 */
export function quantityPartition(n: number, numClients: number, alpha: number, rng: Rng): Partition {
  checkCounts(n, numClients);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw invalidArgument(`alpha must be > 0, got ${alpha}`);
  const p = rng.dirichlet(alpha, numClients);
  const extra = apportion(p, n - numClients);
  const sizes = new Int32Array(numClients);
  for (let k = 0; k < numClients; k++) sizes[k] = 1 + (extra[k] as number);
  return fromSizes(sizes, n, rng);
}

/**
 * Label skew, per-class proportions across clients (the scheme popularised by Hsu et al. 2019 and
 * Yurochkin et al. 2019): for each class c independently, draw p_c ~ Dirichlet(alpha · 1_numClients) and
 * give client k a share p_c[k] of class c's examples (largest-remainder rounding). Small alpha puts each
 * class on a few clients, so each client sees few classes.
 *
 * Empty clients: rather than resampling until none is empty (which may never finish for small alpha and
 * many clients), each empty client receives one randomly chosen example from the currently largest client.
 * That moves at most numClients examples and leaves the skew of everyone else essentially unchanged.
 */
export function dirichletPartition(
  labels: Int32Array,
  numClasses: number,
  numClients: number,
  alpha: number,
  rng: Rng,
): Partition {
  const n = labels.length;
  checkCounts(n, numClients);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw invalidArgument(`alpha must be > 0, got ${alpha}`);
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < n; i++) {
    const y = labels[i] as number;
    if (!Number.isInteger(y) || y < 0 || y >= numClasses)
      throw invalidArgument(`label ${y} at example ${i} outside [0, ${numClasses})`);
    (byClass[y] as number[]).push(i);
  }
  const owner = new Int32Array(n);
  const sizes = new Int32Array(numClients);
  for (const members of byClass) {
    if (members.length === 0) continue;
    rng.shuffle(members);
    const counts = apportion(rng.dirichlet(alpha, numClients), members.length);
    let at = 0;
    for (let k = 0; k < numClients; k++) {
      const c = counts[k] as number;
      for (let t = 0; t < c; t++) owner[members[at + t] as number] = k;
      at += c;
      sizes[k] = (sizes[k] as number) + c;
    }
  }
  fillEmptyClients(owner, sizes, rng);
  return fromOwners(owner, numClients, rng);
}

/** Gives each empty client one random example of the largest client (max-heap over sizes). */
function fillEmptyClients(owner: Int32Array, sizes: Int32Array, rng: Rng): void {
  const empty: number[] = [];
  for (let k = 0; k < sizes.length; k++) if (sizes[k] === 0) empty.push(k);
  if (empty.length === 0) return;
  const members: number[][] = Array.from({ length: sizes.length }, () => []);
  for (let i = 0; i < owner.length; i++) (members[owner[i] as number] as number[]).push(i);
  const heap = new MaxHeap(sizes);
  for (let k = 0; k < sizes.length; k++) if ((sizes[k] as number) > 1) heap.push(k);
  for (const e of empty) {
    // n >= numClients guarantees a donor with >= 2 examples exists while some client is empty.
    const donor = heap.pop();
    const list = members[donor] as number[];
    const pick = rng.int(list.length);
    const example = list[pick] as number;
    list[pick] = list[list.length - 1] as number;
    list.pop();
    owner[example] = e;
    sizes[donor] = (sizes[donor] as number) - 1;
    sizes[e] = 1;
    if ((sizes[donor] as number) > 1) heap.push(donor);
  }
}

/** Max-heap of client ids keyed by a live sizes array; ties broken by lower id. */
class MaxHeap {
  private readonly items: number[] = [];
  constructor(private readonly key: Int32Array) {}
  private above(a: number, b: number): boolean {
    const ka = this.key[a] as number;
    const kb = this.key[b] as number;
    return ka > kb || (ka === kb && a < b);
  }
  push(id: number): void {
    const h = this.items;
    h.push(id);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(h[i] as number, h[parent] as number)) break;
      [h[i], h[parent]] = [h[parent] as number, h[i] as number];
      i = parent;
    }
  }
  pop(): number {
    const h = this.items;
    const top = h[0] as number;
    const last = h.pop() as number;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < h.length && this.above(h[l] as number, h[best] as number)) best = l;
        if (r < h.length && this.above(h[r] as number, h[best] as number)) best = r;
        if (best === i) break;
        [h[i], h[best]] = [h[best] as number, h[i] as number];
        i = best;
      }
    }
    return top;
  }
}

/** Dispatches a PartitionSpec over a labelled pool. */
export function partitionFromSpec(
  spec: PartitionSpec,
  labels: Int32Array,
  numClasses: number,
  numClients: number,
  rng: Rng,
): Partition {
  switch (spec.kind) {
    case 'iid':
      return iidPartition(labels.length, numClients, rng);
    case 'quantity':
      return quantityPartition(labels.length, numClients, spec.alpha, rng);
    case 'dirichlet':
      return dirichletPartition(labels, numClasses, numClients, spec.alpha, rng);
  }
}
