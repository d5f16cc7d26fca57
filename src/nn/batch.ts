/**
 * Minibatch helpers for trainers. `takeRows` gathers a shuffled minibatch into reusable scratch
 * buffers (no allocation once the buffers have grown to the batch size); `sliceRows` gives a zero-copy
 * view of a contiguous range.
 */
import { OrchardError } from '../core/errors.ts';
import type { BagExamples, DenseExamples, Examples } from '../data/types.ts';

/**
 * Reusable buffers for takeRows. The Examples it returns alias these buffers: a later takeRows call
 * with the same scratch overwrites them, so use each batch before taking the next.
 */
export class BatchScratch {
  x = new Float32Array(0);
  y = new Int32Array(0);
  targets = new Float32Array(0);
  offsets = new Int32Array(0);
  ids = new Int32Array(0);
  weights = new Float32Array(0);
  /** The last batch object, reused when the next batch has the same shape and source arrays. */
  last: Examples | null = null;
  lastSource: Examples | null = null;
}

function grow<T extends Float32Array | Int32Array>(buf: T, need: number, make: (n: number) => T): T {
  if (buf.length >= need) return buf;
  return make(Math.max(need, buf.length * 2));
}

function checkRange(data: Examples, indices: ArrayLike<number>, start: number, end: number): void {
  if (
    !(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end >= start && end <= indices.length)
  )
    throw new OrchardError(
      'INVALID_ARGUMENT',
      `row range [${start}, ${end}) is not within 0..${indices.length}`,
    );
  for (let r = start; r < end; r++) {
    const i = indices[r] as number;
    if (!(Number.isInteger(i) && i >= 0 && i < data.n))
      throw new OrchardError('INVALID_ARGUMENT', `row index ${i} is outside [0, ${data.n})`);
  }
}

/** Rows indices[start..end) of `data`, gathered into `scratch` (fresh buffers when none is given). */
export function takeRows(
  data: Examples,
  indices: ArrayLike<number>,
  start: number,
  end: number,
  scratch: BatchScratch = new BatchScratch(),
): Examples {
  checkRange(data, indices, start, end);
  const n = end - start;
  scratch.y = grow(scratch.y, n, (k) => new Int32Array(k));
  const y = scratch.y;
  for (let r = 0; r < n; r++) y[r] = data.y[indices[start + r] as number] as number;
  if (data.kind === 'dense') {
    const d = data.dim;
    scratch.x = grow(scratch.x, n * d, (k) => new Float32Array(k));
    const x = scratch.x;
    const src = data.x;
    for (let r = 0; r < n; r++) {
      const from = (indices[start + r] as number) * d;
      // TypedArray.set wins for wide rows; a plain loop avoids the subarray allocation for narrow ones.
      if (d >= 64) x.set(src.subarray(from, from + d), r * d);
      else for (let t = 0; t < d; t++) x[r * d + t] = src[from + t] as number;
    }
    let targets: Float32Array | undefined;
    let c = 0;
    if (data.targets !== undefined) {
      c = data.n > 0 ? data.targets.length / data.n : 0;
      scratch.targets = grow(scratch.targets, n * c, (k) => new Float32Array(k));
      for (let r = 0; r < n; r++) {
        const from = (indices[start + r] as number) * c;
        for (let t = 0; t < c; t++) scratch.targets[r * c + t] = data.targets[from + t] as number;
      }
      targets = scratch.targets;
    }
    const last = scratch.last;
    // Same source, size and buffers as last time: the old batch object already views the new rows.
    if (
      last !== null &&
      scratch.lastSource === data &&
      last.n === n &&
      last.kind === 'dense' &&
      last.x.buffer === x.buffer &&
      last.y.buffer === y.buffer &&
      (targets === undefined || last.targets?.buffer === targets.buffer)
    )
      return last;
    const xs = x.subarray(0, n * d);
    const ys = y.subarray(0, n);
    const batch: DenseExamples =
      targets === undefined
        ? { kind: 'dense', n, dim: d, x: xs, y: ys }
        : { kind: 'dense', n, dim: d, x: xs, y: ys, targets: targets.subarray(0, n * c) };
    scratch.last = batch;
    scratch.lastSource = data;
    return batch;
  }
  // Bags: copy each bag's ids (and weights) contiguously.
  let total = 0;
  for (let r = start; r < end; r++) {
    const i = indices[r] as number;
    total += (data.offsets[i + 1] as number) - (data.offsets[i] as number);
  }
  scratch.offsets = grow(scratch.offsets, n + 1, (k) => new Int32Array(k));
  scratch.ids = grow(scratch.ids, total, (k) => new Int32Array(k));
  const hasWeights = data.weights !== undefined;
  if (hasWeights) scratch.weights = grow(scratch.weights, total, (k) => new Float32Array(k));
  const { offsets, ids, weights } = scratch;
  let at = 0;
  offsets[0] = 0;
  for (let r = 0; r < n; r++) {
    const i = indices[start + r] as number;
    const s = data.offsets[i] as number;
    const e = data.offsets[i + 1] as number;
    for (let t = s; t < e; t++) {
      ids[at] = data.ids[t] as number;
      if (hasWeights) weights[at] = (data.weights as Float32Array)[t] as number;
      at++;
    }
    offsets[r + 1] = at;
  }
  const bags: BagExamples = hasWeights
    ? {
        kind: 'bags',
        n,
        vocab: data.vocab,
        offsets: offsets.subarray(0, n + 1),
        ids: ids.subarray(0, at),
        weights: weights.subarray(0, at),
        y: y.subarray(0, n),
      }
    : {
        kind: 'bags',
        n,
        vocab: data.vocab,
        offsets: offsets.subarray(0, n + 1),
        ids: ids.subarray(0, at),
        y: y.subarray(0, n),
      };
  scratch.last = bags;
  scratch.lastSource = data;
  return bags;
}

/**
 * Rows [start, end) as zero-copy views. For bags the offsets view keeps absolute positions into the
 * shared ids/weights arrays (offsets[0] need not be 0).
 */
export function sliceRows(data: Examples, start: number, end: number): Examples {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end >= start && end <= data.n))
    throw new OrchardError('INVALID_ARGUMENT', `row range [${start}, ${end}) is not within 0..${data.n}`);
  const n = end - start;
  if (data.kind === 'dense') {
    const d = data.dim;
    const x = data.x.subarray(start * d, end * d);
    const y = data.y.subarray(start, end);
    if (data.targets === undefined) return { kind: 'dense', n, dim: d, x, y };
    const c = data.targets.length / data.n;
    return { kind: 'dense', n, dim: d, x, y, targets: data.targets.subarray(start * c, end * c) };
  }
  const base = {
    kind: 'bags' as const,
    n,
    vocab: data.vocab,
    offsets: data.offsets.subarray(start, end + 1),
    ids: data.ids,
    y: data.y.subarray(start, end),
  };
  return data.weights === undefined ? base : { ...base, weights: data.weights };
}
