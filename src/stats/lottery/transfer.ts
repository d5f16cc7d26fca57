/**
 * Lottery tickets under distribution shift: find tickets on a source domain by IMP, then retrain each
 * ticket in isolation on a shifted target domain under several initializations, against a random mask
 * of the same layer-wise sparsity.
 *
 * Init strategies for a ticket (mask m from source round r):
 * - original-init: θ0 ⊙ m, the initialization the source search started from;
 * - reinit: a fresh random initialization ⊙ m (same mask, new weights);
 * - rewind: θk ⊙ m, the source weights after k dense steps (equals original-init when k = 0);
 * - source-trained: the weights the ticket reached on the source domain (fine-tuning);
 * - random-mask: θ0 ⊙ m', m' a random mask with m's per-layer kept counts (the control).
 */
import { ConfigError, type Issue } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { selectRows, trainTestSplit } from '../../data/federated.ts';
import { loadMnist, MNIST_SIDE } from '../../data/mnist.ts';
import { loadSpam } from '../../data/spam.ts';
import type { DenseExamples, Examples } from '../../data/types.ts';
import { evaluate } from '../../nn/index.ts';
import type { Model } from '../../nn/model.ts';
import { embeddingBag, mlp } from '../../nn/models.ts';
import { type Mask, type MaskJson, maskedModel, type SegmentSparsity } from './mask.ts';
import { type PruneScope, randomMaskLike } from './prune.ts';
import { elasticDeform, invertImage, mapImages, rotateImage, spamCollections } from './shift.ts';
import {
  checkTrainOptions,
  type ImpRound,
  iterativeMagnitudePruning,
  type TrainOptions,
  trainSteps,
} from './train.ts';

export const LOTTERY_TASKS = ['mnist-rotate', 'mnist-invert', 'mnist-elastic', 'spam'] as const;
export type LotteryTask = (typeof LOTTERY_TASKS)[number];

export const INIT_STRATEGIES = [
  'original-init',
  'reinit',
  'rewind',
  'source-trained',
  'random-mask',
] as const;
export type InitStrategy = (typeof INIT_STRATEGIES)[number];

export interface Domain {
  readonly train: Examples;
  readonly test: Examples;
}

export interface DomainPair {
  readonly task: LotteryTask;
  readonly description: string;
  readonly source: Domain;
  readonly target: Domain;
  readonly inputKind: 'dense' | 'bags';
  readonly inputDim: number;
  readonly numClasses: number;
}

export interface DomainOptions {
  readonly seed: number;
  /** Cap on training examples per domain (the rest of the domain's training split is unused). */
  readonly maxTrain?: number;
  /** Cap on test examples per domain. */
  readonly maxTest?: number;
  /** mnist-rotate angle in degrees (default 45). */
  readonly rotateDegrees?: number;
  /** mnist-elastic strength (default α = 34, σ = 4 as in Simard et al.). */
  readonly elasticAlpha?: number;
  readonly elasticSigma?: number;
  /** Hash buckets for the spam bags (default 2^14). */
  readonly spamBuckets?: number;
}

function cap(rows: Int32Array, max: number | undefined): Int32Array {
  return max === undefined || rows.length <= max ? rows : rows.subarray(0, max);
}

/** Stratified split of `rows` (indices into `labels`' data) into train/test index lists. */
function splitRows(
  rows: Int32Array,
  labels: Int32Array,
  rng: Rng,
  options: DomainOptions,
): { train: Int32Array; test: Int32Array } {
  const sub = Int32Array.from(rows, (i) => labels[i] as number);
  const split = trainTestSplit(sub, 0.2, rng);
  const train = rng.shuffle(Int32Array.from(split.train, (k) => rows[k] as number));
  const test = rng.shuffle(Int32Array.from(split.test, (k) => rows[k] as number));
  return { train: cap(train, options.maxTrain), test: cap(test, options.maxTest) };
}

/**
 * Source and target domains for a task. MNIST (10,000 digits) is halved at random: the first half is
 * the source (as is), the second half, transformed, the target, so no digit image appears in both.
 * Spam: source = the corpus's first release (easy-ham-1, hard-ham-1, spam-1), target = the later
 * collections (easy-ham-2, spam-2); see spamCollections.
 */
export function buildDomains(task: LotteryTask, options: DomainOptions): DomainPair {
  const rng = new Rng(options.seed, 0xd0a1);
  if (task === 'spam') {
    const buckets = options.spamBuckets ?? 1 << 14;
    const data = loadSpam(buckets);
    const groups = spamCollections();
    if (groups.length !== data.n)
      throw new ConfigError(
        [{ path: 'spam', message: `file list has ${groups.length} entries, data ${data.n}` }],
        'spam data',
      );
    const first = new Set(['easy-ham-1', 'hard-ham-1', 'spam-1']);
    const srcRows = Int32Array.from(groups.flatMap((g, i) => (first.has(g) ? [i] : [])));
    const tgtRows = Int32Array.from(groups.flatMap((g, i) => (first.has(g) ? [] : [i])));
    const s = splitRows(srcRows, data.y, rng, options);
    const t = splitRows(tgtRows, data.y, rng, options);
    return {
      task,
      description:
        'SpamAssassin, source = first release (easy-ham-1, hard-ham-1, spam-1), target = later collections (easy-ham-2, spam-2); hashed uni+bigram bags',
      source: { train: selectRows(data, s.train), test: selectRows(data, s.test) },
      target: { train: selectRows(data, t.train), test: selectRows(data, t.test) },
      inputKind: 'bags',
      inputDim: buckets,
      numClasses: 2,
    };
  }
  const mnist = loadMnist();
  const perm = rng.permutation(mnist.n);
  const half = Math.floor(mnist.n / 2);
  const s = splitRows(perm.subarray(0, half), mnist.y, rng, options);
  const t = splitRows(perm.subarray(half), mnist.y, rng, options);
  const pick = (rows: Int32Array) => selectRows(mnist, rows) as DenseExamples;
  let transform: (image: Float32Array, index: number) => Float32Array;
  let description: string;
  if (task === 'mnist-rotate') {
    const deg = options.rotateDegrees ?? 45;
    transform = (img) => rotateImage(img, MNIST_SIDE, deg);
    description = `MNIST → MNIST rotated ${deg}° (bilinear), disjoint halves`;
  } else if (task === 'mnist-invert') {
    transform = (img) => invertImage(img);
    description = 'MNIST → inverted MNIST (1 − pixel), disjoint halves';
  } else {
    const alpha = options.elasticAlpha ?? 34;
    const sigma = options.elasticSigma ?? 4;
    // One stream per image so the deformation of an image does not depend on which others are drawn.
    transform = (img, i) =>
      elasticDeform(img, MNIST_SIDE, { alpha, sigma }, Rng.derive(options.seed, 0xe1a5, i));
    description = `MNIST → elastically deformed MNIST (α = ${alpha}, σ = ${sigma}), disjoint halves`;
  }
  const targetTrain = pick(t.train);
  const targetTest = pick(t.test);
  return {
    task,
    description,
    source: { train: pick(s.train), test: pick(s.test) },
    target: {
      train: mapImages(targetTrain, MNIST_SIDE, transform),
      // Test images get their own deformation streams (offset past the training indices).
      test: mapImages(targetTest, MNIST_SIDE, (img, i) => transform(img, i + targetTrain.n)),
    },
    inputKind: 'dense',
    inputDim: mnist.dim,
    numClasses: 10,
  };
}

export type LotteryModelSpec =
  | { readonly kind: 'mlp'; readonly hidden: readonly number[] }
  | { readonly kind: 'embedding_bag'; readonly embeddingDim: number };

export interface LotteryConfig {
  readonly task: LotteryTask;
  readonly seed: number;
  readonly model: LotteryModelSpec;
  readonly domains: Omit<DomainOptions, 'seed'>;
  /** IMP rounds on the source after the dense run. */
  readonly rounds: number;
  readonly pruneRate: number;
  readonly scope: PruneScope;
  readonly includeBiases: boolean;
  /** 0 = rewind to init; k = rewind to the weights after k dense steps. */
  readonly rewindStep: number;
  readonly sourceTrain: Omit<TrainOptions, 'seed'>;
  readonly targetTrain: Omit<TrainOptions, 'seed'>;
  readonly strategies: readonly InitStrategy[];
}

export interface RoundSummary {
  readonly round: number;
  readonly sparsity: number;
  /** Fraction of all parameters (biases included) that are zero. */
  readonly overallSparsity: number;
  readonly sourceAccuracy: number;
  /** The source-trained ticket evaluated on the target test set without retraining. */
  readonly zeroShotTargetAccuracy: number;
  readonly layers: readonly SegmentSparsity[];
}

export interface TransferPoint {
  readonly round: number;
  readonly sparsity: number;
  readonly strategy: InitStrategy;
  readonly accuracy: number;
  readonly loss: number;
}

export interface LotteryResult {
  readonly config: LotteryConfig;
  readonly description: string;
  readonly modelName: string;
  readonly numParams: number;
  readonly sizes: { sourceTrain: number; sourceTest: number; targetTrain: number; targetTest: number };
  readonly rounds: readonly RoundSummary[];
  readonly points: readonly TransferPoint[];
  /** The sparsest source ticket, serialized (Mask.fromJSON restores it). */
  readonly ticket: MaskJson;
  readonly seconds: number;
}

export function checkLotteryConfig(config: LotteryConfig): void {
  const issues: Issue[] = [];
  if (!LOTTERY_TASKS.includes(config.task))
    issues.push({ path: 'task', message: `unknown task ${String(config.task)}` });
  if (!Number.isInteger(config.seed))
    issues.push({ path: 'seed', message: `must be an integer, got ${config.seed}` });
  if (!(Number.isInteger(config.rounds) && config.rounds >= 1))
    issues.push({ path: 'rounds', message: `must be an integer >= 1, got ${config.rounds}` });
  if (!(Number.isFinite(config.pruneRate) && config.pruneRate > 0 && config.pruneRate < 1))
    issues.push({ path: 'pruneRate', message: `must be in (0, 1), got ${config.pruneRate}` });
  if (config.scope !== 'global' && config.scope !== 'layer')
    issues.push({ path: 'scope', message: `must be 'global' or 'layer', got ${String(config.scope)}` });
  if (config.strategies.length === 0)
    issues.push({ path: 'strategies', message: 'needs at least one strategy' });
  for (const s of config.strategies)
    if (!INIT_STRATEGIES.includes(s))
      issues.push({ path: 'strategies', message: `unknown strategy ${String(s)}` });
  const wantBags = config.task === 'spam';
  if (wantBags !== (config.model.kind === 'embedding_bag'))
    issues.push({
      path: 'model.kind',
      message: `task ${config.task} needs ${wantBags ? 'embedding_bag' : 'mlp'}`,
    });
  const d = config.domains;
  for (const key of ['maxTrain', 'maxTest', 'spamBuckets'] as const) {
    const v = d[key];
    if (v !== undefined && !(Number.isInteger(v) && v > 0))
      issues.push({ path: `domains.${key}`, message: `must be a positive integer, got ${v}` });
  }
  if (d.rotateDegrees !== undefined && !Number.isFinite(d.rotateDegrees))
    issues.push({ path: 'domains.rotateDegrees', message: `must be finite, got ${d.rotateDegrees}` });
  if (d.elasticAlpha !== undefined && !(Number.isFinite(d.elasticAlpha) && d.elasticAlpha >= 0))
    issues.push({ path: 'domains.elasticAlpha', message: `must be >= 0, got ${d.elasticAlpha}` });
  if (d.elasticSigma !== undefined && !(Number.isFinite(d.elasticSigma) && d.elasticSigma > 0))
    issues.push({ path: 'domains.elasticSigma', message: `must be > 0, got ${d.elasticSigma}` });
  if (
    !(
      Number.isInteger(config.rewindStep) &&
      config.rewindStep >= 0 &&
      config.rewindStep <= config.sourceTrain.steps
    )
  )
    issues.push({
      path: 'rewindStep',
      message: `must be an integer in 0..sourceTrain.steps, got ${config.rewindStep}`,
    });
  if (issues.length > 0) throw new ConfigError(issues, 'lottery config');
  // Both trainings are checked now, not after the (long) source search.
  checkTrainOptions({ ...config.sourceTrain, seed: config.seed }, 'sourceTrain');
  checkTrainOptions({ ...config.targetTrain, seed: config.seed }, 'targetTrain');
}

function buildModel(spec: LotteryModelSpec, domains: DomainPair): Model {
  return spec.kind === 'mlp'
    ? mlp(domains.inputDim, spec.hidden, domains.numClasses)
    : embeddingBag({
        vocab: domains.inputDim,
        embeddingDim: spec.embeddingDim,
        numClasses: domains.numClasses,
      });
}

export type LotteryProgress = (message: string) => void;

/** Runs the whole experiment; `log` receives one line per finished stage. */
export function runLottery(config: LotteryConfig, log: LotteryProgress = () => {}): LotteryResult {
  checkLotteryConfig(config);
  const started = performance.now();
  const domains = buildDomains(config.task, { ...config.domains, seed: config.seed });
  const model = buildModel(config.model, domains);
  const init = model.init(new Rng(config.seed, 0x1417));
  log(`${domains.description}; ${model.name}, ${model.numParams} parameters`);
  const sourceTrain: TrainOptions = { ...config.sourceTrain, seed: config.seed };
  const targetTrain: TrainOptions = { ...config.targetTrain, seed: config.seed + 1 };
  const rounds: RoundSummary[] = [];
  const imp = iterativeMagnitudePruning(
    model,
    init,
    domains.source.train,
    {
      rounds: config.rounds,
      prune: { rate: config.pruneRate, scope: config.scope, includeBiases: config.includeBiases },
      rewindStep: config.rewindStep,
      train: sourceTrain,
    },
    (r: ImpRound) => {
      const src = evaluate(model, r.trained, domains.source.test);
      const zero = evaluate(model, r.trained, domains.target.test);
      const all = r.mask.numParams;
      rounds.push({
        round: r.round,
        sparsity: r.sparsity,
        overallSparsity: 1 - r.mask.kept() / all,
        sourceAccuracy: src.accuracy,
        zeroShotTargetAccuracy: zero.accuracy,
        layers: r.mask.segmentSparsity(),
      });
      log(
        `source round ${r.round}: sparsity ${(100 * r.sparsity).toFixed(1)}%, source acc ${src.accuracy.toFixed(4)}, zero-shot target acc ${zero.accuracy.toFixed(4)}`,
      );
    },
  );
  const points: TransferPoint[] = [];
  for (const round of imp.rounds) {
    for (const strategy of config.strategies) {
      if (strategy === 'random-mask' && round.round === 0) {
        // At round 0 the "random" mask is the dense mask and the start is θ0: the same run as original-init.
        const same = points.find((p) => p.round === 0 && p.strategy === 'original-init');
        if (same !== undefined) {
          points.push({ ...same, strategy });
          continue;
        }
      }
      let mask: Mask = round.mask;
      let start: Float32Array;
      if (strategy === 'original-init') start = imp.init;
      else if (strategy === 'reinit') start = model.init(new Rng(config.seed, 0x2e11 + round.round));
      else if (strategy === 'rewind') start = imp.rewind;
      else if (strategy === 'source-trained') start = round.trained;
      else {
        mask =
          round.round === 0
            ? round.mask
            : randomMaskLike(round.mask, new Rng(config.seed, 0x7a5d + round.round));
        start = imp.init;
      }
      const masked = maskedModel(model, mask);
      const run = trainSteps(masked, mask.applied(start), domains.target.train, targetTrain);
      const ev = evaluate(masked, run.params, domains.target.test);
      points.push({
        round: round.round,
        sparsity: round.sparsity,
        strategy,
        accuracy: ev.accuracy,
        loss: ev.loss,
      });
    }
    const line = points
      .filter((p) => p.round === round.round)
      .map((p) => `${p.strategy} ${p.accuracy.toFixed(4)}`)
      .join(', ');
    log(`target round ${round.round} (${(100 * round.sparsity).toFixed(1)}%): ${line}`);
  }
  return {
    config,
    description: domains.description,
    modelName: model.name,
    numParams: model.numParams,
    sizes: {
      sourceTrain: domains.source.train.n,
      sourceTest: domains.source.test.n,
      targetTrain: domains.target.train.n,
      targetTest: domains.target.test.n,
    },
    rounds,
    points,
    ticket: (imp.rounds[imp.rounds.length - 1] as ImpRound).mask.toJSON(),
    seconds: (performance.now() - started) / 1000,
  };
}

/** Ready-made configurations: `quick` finishes in well under a minute, `full` in a few minutes. */
export function lotteryPreset(task: LotteryTask, quick: boolean, seed = 1): LotteryConfig {
  const strategies = [...INIT_STRATEGIES];
  if (task === 'spam') {
    return {
      task,
      seed,
      model: { kind: 'embedding_bag', embeddingDim: 16 },
      domains: quick ? { spamBuckets: 1 << 12, maxTrain: 1200 } : { spamBuckets: 1 << 14 },
      rounds: quick ? 4 : 8,
      pruneRate: quick ? 0.63 : 0.4,
      scope: 'global',
      includeBiases: false,
      rewindStep: quick ? 20 : 50,
      sourceTrain: { steps: quick ? 150 : 500, batchSize: 32, lr: 0.5, momentum: 0.9 },
      targetTrain: { steps: quick ? 150 : 500, batchSize: 32, lr: 0.5, momentum: 0.9 },
      strategies,
    };
  }
  return {
    task,
    seed,
    model: { kind: 'mlp', hidden: quick ? [100] : [300, 100] },
    domains: quick ? { maxTrain: 3000, maxTest: 1000 } : {},
    rounds: quick ? 4 : 8,
    pruneRate: quick ? 0.63 : 0.4,
    scope: 'global',
    includeBiases: false,
    rewindStep: quick ? 20 : 50,
    sourceTrain: { steps: quick ? 200 : 600, batchSize: 64, lr: 0.05, momentum: 0.9 },
    // Inverted digits light up ~85% of the pixels, so first-layer pre-activations are several times
    // larger than on MNIST; at lr 0.05 the dense network stalls at chance (measured), at 0.01 it trains.
    targetTrain: {
      steps: quick ? 200 : 600,
      batchSize: 64,
      lr: task === 'mnist-invert' ? 0.01 : 0.05,
      momentum: 0.9,
    },
    strategies,
  };
}
