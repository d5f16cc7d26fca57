/**
 * A small seeded minibatch trainer (SGD or heavy-ball momentum) over Examples, and iterative magnitude
 * pruning (IMP) with rewinding built on it.
 *
 * Training is counted in steps, not epochs, so "rewind to iteration k" means the weights after exactly k
 * optimizer steps. The data order depends only on `seed`, so every IMP round sees the same batches.
 */
import { ConfigError, DivergenceError, type Issue, ShapeError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import type { Examples } from '../../data/types.ts';
import { BatchScratch, takeRows } from '../../nn/batch.ts';
import type { Model } from '../../nn/model.ts';
import { createOptimizer } from '../../nn/optim.ts';
import { Mask, maskedModel } from './mask.ts';
import { checkRate, magnitudePrune, type PruneOptions } from './prune.ts';

export interface TrainOptions {
  /** Optimizer steps. */
  readonly steps: number;
  readonly batchSize: number;
  readonly lr: number;
  /** Heavy-ball momentum in [0, 1); 0 is plain SGD. */
  readonly momentum: number;
  /** Seeds the data order. */
  readonly seed: number;
}

export interface TrainResult {
  readonly params: Float32Array;
  /** Copies of the parameters after exactly k steps, for each requested k (0 = the start). */
  readonly snapshots: ReadonlyMap<number, Float32Array>;
  /** Mean training loss over the last (up to) 20 steps. */
  readonly finalLoss: number;
}

export function checkTrainOptions(options: TrainOptions, path = 'train'): void {
  const issues: Issue[] = [];
  const posInt = (v: number, k: string) => {
    if (!(Number.isInteger(v) && v > 0))
      issues.push({ path: `${path}.${k}`, message: `must be a positive integer, got ${v}` });
  };
  posInt(options.steps, 'steps');
  posInt(options.batchSize, 'batchSize');
  if (!(Number.isFinite(options.lr) && options.lr > 0))
    issues.push({ path: `${path}.lr`, message: `must be a finite positive number, got ${options.lr}` });
  if (!(options.momentum >= 0 && options.momentum < 1))
    issues.push({ path: `${path}.momentum`, message: `must be in [0, 1), got ${options.momentum}` });
  if (!Number.isInteger(options.seed))
    issues.push({ path: `${path}.seed`, message: `must be an integer, got ${options.seed}` });
  if (issues.length > 0) throw new ConfigError(issues, 'training options');
}

/** Trains a copy of `start` on `data`; see the module comment. */
export function trainSteps(
  model: Model,
  start: Float32Array,
  data: Examples,
  options: TrainOptions,
  snapshotSteps: readonly number[] = [],
): TrainResult {
  checkTrainOptions(options);
  if (start.length !== model.numParams)
    throw new ShapeError(`start has ${start.length} entries, model ${model.name} has ${model.numParams}`);
  if (data.n === 0)
    throw new ConfigError([{ path: 'data', message: 'no training examples' }], 'training data');
  for (const k of snapshotSteps)
    if (!(Number.isInteger(k) && k >= 0 && k <= options.steps))
      throw new ConfigError(
        [{ path: 'snapshotSteps', message: `step ${k} is not within 0..${options.steps}` }],
        'training options',
      );
  const params = Float32Array.from(start);
  const grad = new Float32Array(model.numParams);
  const optimizer =
    options.momentum > 0
      ? createOptimizer(
          { kind: 'momentum', lr: options.lr, momentum: options.momentum, nesterov: false },
          model.numParams,
        )
      : createOptimizer({ kind: 'sgd', lr: options.lr }, model.numParams);
  const rng = new Rng(options.seed, 0x1077e);
  const scratch = new BatchScratch();
  const snapshots = new Map<number, Float32Array>();
  const wanted = new Set(snapshotSteps);
  if (wanted.has(0)) snapshots.set(0, Float32Array.from(params));
  const batch = Math.min(options.batchSize, data.n);
  let order = rng.permutation(data.n);
  let cursor = 0;
  const recent: number[] = [];
  for (let step = 1; step <= options.steps; step++) {
    if (cursor + batch > data.n) {
      order = rng.permutation(data.n);
      cursor = 0;
    }
    const mb = takeRows(data, order, cursor, cursor + batch, scratch);
    cursor += batch;
    grad.fill(0);
    const loss = model.lossAndGrad(params, mb, grad);
    if (!Number.isFinite(loss))
      throw new DivergenceError(`training loss became ${loss} at step ${step} (lr ${options.lr})`);
    optimizer.step(params, grad);
    recent.push(loss);
    if (recent.length > 20) recent.shift();
    if (wanted.has(step)) snapshots.set(step, Float32Array.from(params));
  }
  const finalLoss = recent.reduce((s, v) => s + v, 0) / recent.length;
  return { params, snapshots, finalLoss };
}

export interface ImpOptions {
  /** Pruning rounds after the dense run; the last mask keeps ≈ (1 − rate)^rounds of the prunable weights. */
  readonly rounds: number;
  readonly prune: PruneOptions;
  /** Rewind point: 0 = the initialization (Frankle & Carbin), k > 0 = the weights after k dense steps. */
  readonly rewindStep: number;
  readonly train: TrainOptions;
}

export interface ImpRound {
  /** 0 = the dense network. */
  readonly round: number;
  readonly mask: Mask;
  /** Fraction of prunable weights removed. */
  readonly sparsity: number;
  /** Weights at the end of this round's training (zero outside the mask). */
  readonly trained: Float32Array;
  readonly trainLoss: number;
}

export interface ImpResult {
  /** The initialization θ0 the dense run started from. */
  readonly init: Float32Array;
  /** The rewind weights θk (equal to init when rewindStep is 0). */
  readonly rewind: Float32Array;
  readonly rewindStep: number;
  readonly rounds: readonly ImpRound[];
}

export function checkImpOptions(options: ImpOptions): void {
  const issues: Issue[] = [];
  if (!(Number.isInteger(options.rounds) && options.rounds >= 1))
    issues.push({ path: 'rounds', message: `must be an integer >= 1, got ${options.rounds}` });
  if (
    !(
      Number.isInteger(options.rewindStep) &&
      options.rewindStep >= 0 &&
      options.rewindStep <= options.train.steps
    )
  )
    issues.push({
      path: 'rewindStep',
      message: `must be an integer in 0..train.steps, got ${options.rewindStep}`,
    });
  if (issues.length > 0) throw new ConfigError(issues, 'IMP options');
  checkRate(options.prune.rate, 'prune.rate');
  checkTrainOptions(options.train);
}

/**
 * Iterative magnitude pruning: train dense from `init` (saving θk), then for each round prune the
 * previous round's trained weights, reset the survivors to θk, and retrain under the new mask.
 * `onRound` sees each round as it finishes (progress reporting).
 */
export function iterativeMagnitudePruning(
  model: Model,
  init: Float32Array,
  data: Examples,
  options: ImpOptions,
  onRound?: (round: ImpRound) => void,
): ImpResult {
  checkImpOptions(options);
  const dense = trainSteps(model, init, data, options.train, [options.rewindStep]);
  const rewind = dense.snapshots.get(options.rewindStep) as Float32Array;
  let mask = Mask.dense(model);
  const rounds: ImpRound[] = [];
  const first: ImpRound = { round: 0, mask, sparsity: 0, trained: dense.params, trainLoss: dense.finalLoss };
  rounds.push(first);
  onRound?.(first);
  for (let r = 1; r <= options.rounds; r++) {
    mask = magnitudePrune(mask, (rounds[r - 1] as ImpRound).trained, options.prune);
    const run = trainSteps(maskedModel(model, mask), mask.applied(rewind), data, options.train);
    const round: ImpRound = {
      round: r,
      mask,
      sparsity: mask.sparsity(),
      trained: run.params,
      trainLoss: run.finalLoss,
    };
    rounds.push(round);
    onRound?.(round);
  }
  return { init: Float32Array.from(init), rewind, rewindStep: options.rewindStep, rounds };
}
