/**
 * Client-side local training: plain minibatch SGD from the downloaded parameters, returning the
 * pseudo-gradient delta = start − trained. This is the simulator's hot path, so all per-step memory
 * (parameter copy, gradient, permutation, gathered minibatch via src/nn/batch.ts) lives in a reusable
 * TrainScratch, so a step allocates nothing once the buffers have grown.
 */
import { invalidArgument, ShapeError } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import { axpy } from '../core/vec.ts';
import type { Examples } from '../data/types.ts';
import { BatchScratch, takeRows } from '../nn/batch.ts';
import type { Model } from '../nn/model.ts';
import { SequentialModel } from '../nn/models.ts';
import type { LocalTrainSpec } from './spec.ts';
import type { UpdateArena } from './wasm.ts';

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
  readonly batch = new BatchScratch();
  /**
   * Opt-in: allocate deltas in this arena so server accumulation reads them in place (the SIMD fast
   * path). Whoever consumes the update should `arena.free(delta)` afterwards; blocks of dropped
   * deltas are otherwise reclaimed only when the garbage collector gets to them.
   */
  deltaArena: UpdateArena | undefined = undefined;

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
  // Softmax regression takes the fused path (src/nn/fused.ts): same SGD, no per-batch gathers.
  const fused = model instanceof SequentialModel && data.kind === 'dense' ? model.softmaxSgd() : null;
  if (fused !== null && data.kind === 'dense' && n > 0) fused.begin(start, data, batchSize);
  outer: for (let epoch = 0; epoch < spec.epochs && n > 0; epoch++) {
    const perm = scratch.ensurePerm(n);
    // Fisher–Yates over the first n entries (the buffer may be longer than n).
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = perm[i] as number;
      perm[i] = perm[j] as number;
      perm[j] = t;
    }
    if (fused !== null) fused.arrange(perm);
    for (let b = 0; b < n; b += batchSize) {
      if (steps >= maxSteps) break outer;
      const end = Math.min(n, b + batchSize);
      if (fused !== null) {
        lossSum += fused.step(b, end, spec.lr) * (end - b);
        lossCount += end - b;
        steps++;
        continue;
      }
      const batch = takeRows(data, perm, b, end, scratch.batch);
      grad.fill(0);
      const loss = model.lossAndGrad(params, batch, grad);
      axpy(params, negLr, grad);
      lossSum += loss * (end - b);
      lossCount += end - b;
      steps++;
    }
  }
  const delta = scratch.deltaArena?.alloc(start.length) ?? new Float32Array(start.length);
  if (fused !== null && n > 0) fused.finishDelta(start, delta);
  else for (let i = 0; i < delta.length; i++) delta[i] = (start[i] as number) - (params[i] as number);
  return { delta, numExamples: n, loss: lossCount > 0 ? lossSum / lossCount : 0, steps };
}
