/**
 * Client-side local training: plain minibatch SGD from the downloaded parameters, returning the
 * pseudo-gradient delta = start − trained. This is the simulator's hot path, so all per-step memory
 * (parameter copy, gradient, permutation, gathered minibatch) lives in a reusable TrainScratch and a
 * step allocates nothing for dense data.
 */
import { invalidArgument, ShapeError } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import { axpy } from '../core/vec.ts';
import type { BagExamples, DenseExamples, Examples } from '../data/types.ts';
import type { Model } from '../nn/model.ts';
import type { LocalTrainSpec } from './spec.ts';

export interface LocalResult {
  /** start − trained parameters (fresh array: the caller may hold it while the update is in transit). */
  readonly delta: Float32Array;
  readonly numExamples: number;
  /** Mean per-example training loss over the minibatches visited (0 when no step was taken). */
  readonly loss: number;
  readonly steps: number;
}

/** Reusable buffers for trainLocal; grows on demand, so one scratch can serve every client of a run. */
export class TrainScratch {
  params = new Float32Array(0);
  grad = new Float32Array(0);
  perm = new Int32Array(0);
  // Dense minibatch buffers sized for `denseRows` rows of `denseDim` features.
  private denseDim = -1;
  private denseRows = 0;
  private denseX = new Float32Array(0);
  private denseY = new Int32Array(0);
  private denseTargets: Float32Array | undefined;
  private targetWidth = 0;
  private fullBatch: DenseExamples | undefined;
  private partialBatch: DenseExamples | undefined;
  // Bag minibatch buffers.
  private bagOffsets = new Int32Array(0);
  private bagIds = new Int32Array(0);
  private bagWeights = new Float32Array(0);
  private bagY = new Int32Array(0);

  ensureParams(numParams: number): void {
    if (this.params.length !== numParams) {
      this.params = new Float32Array(numParams);
      this.grad = new Float32Array(numParams);
    }
  }

  ensurePerm(n: number): Int32Array {
    if (this.perm.length < n) this.perm = new Int32Array(n);
    const p = this.perm;
    // Reset to the identity so the shuffle (and hence training) depends only on the rng, never on
    // what an earlier client left in the scratch.
    for (let i = 0; i < n; i++) p[i] = i;
    return p;
  }

  /** Gathers data rows perm[start..end) into the dense minibatch buffers and returns a view of them. */
  gatherDense(
    data: DenseExamples,
    perm: Int32Array,
    start: number,
    end: number,
    batchSize: number,
  ): DenseExamples {
    const dim = data.dim;
    const targets = data.targets;
    const tw = targets === undefined ? 0 : targets.length / data.n;
    if (dim !== this.denseDim || batchSize !== this.denseRows || tw !== this.targetWidth) {
      this.denseDim = dim;
      this.denseRows = batchSize;
      this.targetWidth = tw;
      this.denseX = new Float32Array(batchSize * dim);
      this.denseY = new Int32Array(batchSize);
      this.denseTargets = tw > 0 ? new Float32Array(batchSize * tw) : undefined;
      this.fullBatch = undefined;
      this.partialBatch = undefined;
    }
    const x = this.denseX;
    const y = this.denseY;
    const src = data.x;
    const labels = data.y;
    const rows = end - start;
    for (let r = 0; r < rows; r++) {
      const i = perm[start + r] as number;
      // Element copy instead of set(subarray): a subarray view would allocate per row.
      const from = i * dim;
      const to = r * dim;
      for (let j = 0; j < dim; j++) x[to + j] = src[from + j] as number;
      y[r] = labels[i] as number;
    }
    const outTargets = this.denseTargets;
    if (targets !== undefined && outTargets !== undefined) {
      for (let r = 0; r < rows; r++) {
        const i = perm[start + r] as number;
        for (let j = 0; j < tw; j++) outTargets[r * tw + j] = targets[i * tw + j] as number;
      }
    }
    return this.batchView(rows, dim, tw);
  }

  /** Views are cached per size: the full-size batch and the (at most one) trailing partial size. */
  private batchView(rows: number, dim: number, tw: number): DenseExamples {
    const cached = rows === this.denseRows ? this.fullBatch : this.partialBatch;
    if (cached !== undefined && cached.n === rows) return cached;
    const t = this.denseTargets;
    const view: DenseExamples =
      t !== undefined
        ? {
            kind: 'dense',
            n: rows,
            dim,
            x: this.denseX.subarray(0, rows * dim),
            y: this.denseY.subarray(0, rows),
            targets: t.subarray(0, rows * tw),
          }
        : {
            kind: 'dense',
            n: rows,
            dim,
            x: this.denseX.subarray(0, rows * dim),
            y: this.denseY.subarray(0, rows),
          };
    if (rows === this.denseRows) this.fullBatch = view;
    else this.partialBatch = view;
    return view;
  }

  /** Gathers bags perm[start..end); bag batches have a variable id count, so the view is rebuilt. */
  gatherBags(data: BagExamples, perm: Int32Array, start: number, end: number): BagExamples {
    const rows = end - start;
    let total = 0;
    for (let r = 0; r < rows; r++) {
      const i = perm[start + r] as number;
      total += (data.offsets[i + 1] as number) - (data.offsets[i] as number);
    }
    if (this.bagOffsets.length < rows + 1) this.bagOffsets = new Int32Array(rows + 1);
    if (this.bagY.length < rows) this.bagY = new Int32Array(rows);
    if (this.bagIds.length < total) {
      this.bagIds = new Int32Array(total);
      this.bagWeights = new Float32Array(total);
    }
    const offsets = this.bagOffsets;
    const ids = this.bagIds;
    const weights = this.bagWeights;
    const srcWeights = data.weights;
    let at = 0;
    offsets[0] = 0;
    for (let r = 0; r < rows; r++) {
      const i = perm[start + r] as number;
      const a = data.offsets[i] as number;
      const b = data.offsets[i + 1] as number;
      ids.set(data.ids.subarray(a, b), at);
      if (srcWeights !== undefined) weights.set(srcWeights.subarray(a, b), at);
      at += b - a;
      offsets[r + 1] = at;
      this.bagY[r] = data.y[i] as number;
    }
    const base = {
      kind: 'bags' as const,
      n: rows,
      vocab: data.vocab,
      offsets: offsets.subarray(0, rows + 1),
      ids: ids.subarray(0, total),
      y: this.bagY.subarray(0, rows),
    };
    return srcWeights !== undefined ? { ...base, weights: weights.subarray(0, total) } : base;
  }
}

function checkInputs(model: Model, start: Float32Array, data: Examples, spec: LocalTrainSpec): void {
  if (start.length !== model.numParams)
    throw new ShapeError(
      `start params have length ${start.length}, model ${model.name} has ${model.numParams}`,
    );
  if (data.kind !== model.inputKind)
    throw new ShapeError(`model ${model.name} takes ${model.inputKind} inputs, client data is ${data.kind}`);
  if (data.kind === 'dense' && data.dim !== model.inputDim)
    throw new ShapeError(
      `client data has ${data.dim} features, model ${model.name} expects ${model.inputDim}`,
    );
  if (!(Number.isInteger(spec.epochs) && spec.epochs > 0))
    throw invalidArgument(`epochs must be a positive integer, got ${spec.epochs}`);
  if (!(Number.isInteger(spec.batchSize) && spec.batchSize > 0))
    throw invalidArgument(`batchSize must be a positive integer, got ${spec.batchSize}`);
  if (!(Number.isFinite(spec.lr) && spec.lr > 0))
    throw invalidArgument(`lr must be finite and > 0, got ${spec.lr}`);
  if (spec.maxSteps !== undefined && !(Number.isInteger(spec.maxSteps) && spec.maxSteps > 0))
    throw invalidArgument(`maxSteps must be a positive integer, got ${spec.maxSteps}`);
}

/**
 * Runs `spec.epochs` passes of minibatch SGD over a fresh seeded shuffle per epoch (the last batch of
 * an epoch may be smaller), stopping early after `spec.maxSteps` steps. `start` is not modified.
 */
export function trainLocal(
  model: Model,
  start: Float32Array,
  data: Examples,
  spec: LocalTrainSpec,
  rng: Rng,
  scratch: TrainScratch = new TrainScratch(),
): LocalResult {
  checkInputs(model, start, data, spec);
  const n = data.n;
  scratch.ensureParams(model.numParams);
  const params = scratch.params;
  const grad = scratch.grad;
  params.set(start);
  const batchSize = spec.batchSize;
  const maxSteps = spec.maxSteps ?? Number.POSITIVE_INFINITY;
  const negLr = -spec.lr;
  let steps = 0;
  let lossSum = 0;
  let lossCount = 0;
  outer: for (let epoch = 0; epoch < spec.epochs && n > 0; epoch++) {
    const perm = scratch.ensurePerm(n);
    // Fisher–Yates over the first n entries (the buffer may be longer than n).
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = perm[i] as number;
      perm[i] = perm[j] as number;
      perm[j] = t;
    }
    for (let b = 0; b < n; b += batchSize) {
      if (steps >= maxSteps) break outer;
      const end = Math.min(n, b + batchSize);
      const batch =
        data.kind === 'dense'
          ? scratch.gatherDense(data, perm, b, end, batchSize)
          : scratch.gatherBags(data, perm, b, end);
      grad.fill(0);
      const loss = model.lossAndGrad(params, batch, grad);
      axpy(params, negLr, grad);
      lossSum += loss * (end - b);
      lossCount += end - b;
      steps++;
    }
  }
  const delta = new Float32Array(start.length);
  for (let i = 0; i < delta.length; i++) delta[i] = (start[i] as number) - (params[i] as number);
  return { delta, numExamples: n, loss: lossCount > 0 ? lossSum / lossCount : 0, steps };
}
