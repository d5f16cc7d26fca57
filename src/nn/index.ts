/** Models, losses, optimizers and batching for Orchard's clients, servers and simulator. */
import { ConfigError, OrchardError } from '../core/errors.ts';
import type { Examples } from '../data/types.ts';
import { sliceRows } from './batch.ts';
import { binaryLogistic, softmaxCrossEntropy } from './losses.ts';
import type { Evaluation, Model } from './model.ts';
import { cnn, embeddingBag, mlp, softmaxRegression } from './models.ts';
import type { ModelSpec } from './spec.ts';

export { BatchScratch, sliceRows, takeRows } from './batch.ts';
export { SoftmaxSgd } from './fused.ts';
export { finiteDifferenceMismatches, sampleIndices } from './gradcheck.ts';
export type { Layer, Padding, WeightInit } from './layers.ts';
export {
  Conv2d,
  Dense,
  EmbeddingBag,
  Flatten,
  MaxPool2,
  Relu,
  setSimdKernels,
  simdKernelsActive,
  Tanh,
} from './layers.ts';
export { binaryLogistic, meanSquaredError, softmaxCrossEntropy } from './losses.ts';
export type { Evaluation, Model } from './model.ts';
export type { CnnOptions, LossKind } from './models.ts';
export { cnn, embeddingBag, logisticRegression, mlp, SequentialModel, softmaxRegression } from './models.ts';
export type { Optimizer } from './optim.ts';
export { createOptimizer } from './optim.ts';

export interface ModelInput {
  readonly inputKind: 'dense' | 'bags';
  /** Dense feature count, or the id-space size of bag data. */
  readonly inputDim: number;
  readonly numClasses: number;
}

/** Builds the model a spec describes for a dataset's input shape; ConfigError when they do not fit. */
export function createModel(spec: ModelSpec, input: ModelInput): Model {
  const { inputKind, inputDim, numClasses } = input;
  const issues: { path: string; message: string }[] = [];
  if (!(Number.isInteger(inputDim) && inputDim > 0))
    issues.push({ path: 'inputDim', message: `must be a positive integer, got ${inputDim}` });
  if (!(Number.isInteger(numClasses) && numClasses >= 2))
    issues.push({ path: 'numClasses', message: `a classifier needs at least 2 classes, got ${numClasses}` });
  if (spec.kind === 'embedding_bag') {
    if (inputKind !== 'bags')
      issues.push({
        path: 'model.kind',
        message: 'embedding_bag needs bag (text) data, the dataset is dense',
      });
  } else if (inputKind !== 'dense') {
    issues.push({
      path: 'model.kind',
      message: `${spec.kind} needs dense features, the dataset has bags of ids (use embedding_bag)`,
    });
  }
  if (spec.kind === 'cnn' && spec.side * spec.side * spec.channels !== inputDim)
    issues.push({
      path: 'model',
      message: `cnn side·side·channels = ${spec.side}·${spec.side}·${spec.channels} = ${spec.side * spec.side * spec.channels} but the dataset has ${inputDim} features`,
    });
  if (issues.length > 0) throw new ConfigError(issues, 'model config');
  switch (spec.kind) {
    case 'softmax':
      return softmaxRegression(inputDim, numClasses);
    case 'mlp':
      return mlp(inputDim, spec.hidden, numClasses, spec.activation);
    case 'cnn':
      return cnn({
        side: spec.side,
        channels: spec.channels,
        conv: spec.conv,
        kernel: spec.kernel,
        hidden: spec.hidden,
        numClasses,
      });
    case 'embedding_bag':
      return embeddingBag({ vocab: inputDim, embeddingDim: spec.embeddingDim, numClasses });
    default: {
      const unknown: never = spec;
      throw new ConfigError(
        [
          {
            path: 'model.kind',
            message: `unknown model ${JSON.stringify((unknown as { kind: unknown }).kind)}`,
          },
        ],
        'model config',
      );
    }
  }
}

/** Examples per forward call in evaluate: bounds the memory of the logits and activations. */
const EVAL_CHUNK = 512;

/**
 * Mean cross-entropy (binary logistic loss for one-output models) and argmax accuracy over the first
 * min(n, maxExamples) examples, computed in chunks so memory stays bounded on large test sets.
 */
export function evaluate(
  model: Model,
  params: Float32Array,
  data: Examples,
  maxExamples?: number,
): Evaluation {
  if (maxExamples !== undefined && !(Number.isInteger(maxExamples) && maxExamples > 0))
    throw new OrchardError('INVALID_ARGUMENT', `maxExamples must be a positive integer, got ${maxExamples}`);
  const n = Math.min(data.n, maxExamples ?? data.n);
  if (n === 0) throw new OrchardError('DATA_INVALID', 'cannot evaluate on zero examples');
  const c = model.numOutputs;
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < n; start += EVAL_CHUNK) {
    const end = Math.min(n, start + EVAL_CHUNK);
    const chunk = sliceRows(data, start, end);
    const m = end - start;
    const out = model.forward(params, chunk);
    const y = chunk.y;
    if (c === 1) {
      lossSum += binaryLogistic(out, y, m, null, 0);
      for (let i = 0; i < m; i++) if (((out[i] as number) > 0 ? 1 : 0) === y[i]) correct++;
    } else {
      lossSum += softmaxCrossEntropy(out, y, m, c, null, 0);
      for (let i = 0; i < m; i++) {
        let best = 0;
        let bestV = out[i * c] as number;
        for (let j = 1; j < c; j++) {
          const v = out[i * c + j] as number;
          if (v > bestV) {
            bestV = v;
            best = j;
          }
        }
        if (best === y[i]) correct++;
      }
    }
  }
  return { loss: lossSum / n, accuracy: correct / n, n };
}
