/**
 * Models as a stack of layers over one flat parameter vector. Layer ℓ's parameters live at
 * params[offset(ℓ) .. offset(ℓ) + numParams(ℓ)) in stack order (an embedding bag, when present,
 * comes first); `paramViews` returns them as named subarray views.
 *
 * Activations and their gradients live in scratch buffers owned by the model and sized to the
 * largest batch seen so far, so steady-state lossAndGrad calls allocate nothing.
 */
import { ConfigError, OrchardError, ShapeError } from '../core/errors.ts';
import type { Rng } from '../core/rng.ts';
import type { BagExamples, DenseExamples, Examples } from '../data/types.ts';
import { SoftmaxSgd } from './fused.ts';
import {
  Conv2d,
  Dense,
  EmbeddingBag,
  Flatten,
  type Layer,
  MaxPool2,
  type Padding,
  Relu,
  Tanh,
} from './layers.ts';
import { binaryLogistic, meanSquaredError, softmaxCrossEntropy } from './losses.ts';
import type { Model } from './model.ts';

/** 'ce': softmax cross-entropy on labels; 'logistic': one logit, labels in {0,1}; 'mse': on targets. */
export type LossKind = 'ce' | 'logistic' | 'mse';

export class SequentialModel implements Model {
  readonly numParams: number;
  readonly numOutputs: number;
  readonly inputDim: number;
  readonly inputKind: 'dense' | 'bags';
  private readonly offsets: Int32Array;
  private readonly bagOffset: number;
  private readonly bag: EmbeddingBag | null;
  private capacity = 0;
  private acts: Float32Array[] = [];
  private dActs: Float32Array[] = [];
  private bagOut = new Float32Array(0);
  private dBagOut = new Float32Array(0);
  private fusedSgd: SoftmaxSgd | null | undefined = undefined;

  constructor(
    readonly name: string,
    readonly layers: readonly Layer[],
    readonly loss: LossKind,
    input: { kind: 'dense'; dim: number } | { kind: 'bags'; bag: EmbeddingBag },
  ) {
    if (layers.length === 0) throw new OrchardError('CONFIG_INVALID', 'a model needs at least one layer');
    this.inputKind = input.kind;
    this.bag = input.kind === 'bags' ? input.bag : null;
    this.inputDim = input.kind === 'dense' ? input.dim : input.bag.vocab;
    let expected = input.kind === 'dense' ? input.dim : input.bag.outSize;
    let total = this.bag === null ? 0 : this.bag.numParams;
    this.bagOffset = 0;
    this.offsets = new Int32Array(layers.length);
    layers.forEach((layer, l) => {
      if (layer.inSize !== expected)
        throw new OrchardError(
          'CONFIG_INVALID',
          `layer ${l} (${layer.name}) takes ${layer.inSize} values per example but receives ${expected}`,
        );
      this.offsets[l] = total;
      total += layer.numParams;
      expected = layer.outSize;
    });
    this.numParams = total;
    this.numOutputs = expected;
    if (loss === 'logistic' && expected !== 1)
      throw new OrchardError('CONFIG_INVALID', `logistic loss needs 1 output, the model has ${expected}`);
    this.reserve(1);
  }

  /**
   * The fused SGD path (see fused.ts) when this model is softmax regression — one dense layer with
   * softmax cross-entropy on dense inputs — else null. Local trainers use it instead of lossAndGrad.
   */
  softmaxSgd(): SoftmaxSgd | null {
    if (this.fusedSgd === undefined) {
      const only = this.layers[0];
      this.fusedSgd =
        this.layers.length === 1 && only instanceof Dense && this.loss === 'ce' && this.inputKind === 'dense'
          ? new SoftmaxSgd(only.inSize, only.outSize)
          : null;
    }
    return this.fusedSgd;
  }

  init(rng: Rng): Float32Array {
    const params = new Float32Array(this.numParams);
    if (this.bag !== null) this.bag.init(params, this.bagOffset, rng);
    this.layers.forEach((layer, l) => {
      layer.init(params, this.offsets[l] as number, rng);
    });
    return params;
  }

  /** Named subarray views of each layer's parameters (debugging, per-layer statistics). */
  paramViews(params: Float32Array): { name: string; params: Float32Array }[] {
    this.checkParams(params, 'params');
    const views: { name: string; params: Float32Array }[] = [];
    if (this.bag !== null)
      views.push({
        name: this.bag.name,
        params: params.subarray(this.bagOffset, this.bagOffset + this.bag.numParams),
      });
    this.layers.forEach((layer, l) => {
      const o = this.offsets[l] as number;
      if (layer.numParams > 0)
        views.push({ name: layer.name, params: params.subarray(o, o + layer.numParams) });
    });
    return views;
  }

  private reserve(n: number): void {
    if (n <= this.capacity) return;
    const cap = Math.max(n, this.capacity * 2);
    this.acts = this.layers.map((layer) => new Float32Array(cap * layer.outSize));
    this.dActs = this.layers.map((layer) => new Float32Array(cap * layer.outSize));
    for (const layer of this.layers) layer.reserve(cap);
    if (this.bag !== null) {
      this.bagOut = new Float32Array(cap * this.bag.outSize);
      this.dBagOut = new Float32Array(cap * this.bag.outSize);
    }
    this.capacity = cap;
  }

  private checkParams(params: Float32Array, what: string): void {
    if (params.length !== this.numParams)
      throw new ShapeError(`${what} has ${params.length} entries, model ${this.name} has ${this.numParams}`);
  }

  private checkData(data: Examples): void {
    if (data.kind !== this.inputKind)
      throw new ShapeError(`model ${this.name} takes ${this.inputKind} examples, got ${data.kind}`);
    const n = data.n;
    if (!(Number.isInteger(n) && n >= 0))
      throw new ShapeError(`example count ${n} is not a non-negative integer`);
    if (data.y.length < n) throw new ShapeError(`${n} examples but only ${data.y.length} labels`);
    if (data.kind === 'dense') {
      if (data.dim !== this.inputDim)
        throw new ShapeError(`model ${this.name} takes ${this.inputDim} features, data has ${data.dim}`);
      if (data.x.length < n * data.dim)
        throw new ShapeError(
          `${n} examples of dim ${data.dim} need ${n * data.dim} values, x has ${data.x.length}`,
        );
    } else {
      if (data.offsets.length < n + 1)
        throw new ShapeError(`${n} bags need ${n + 1} offsets, got ${data.offsets.length}`);
      (this.bag as EmbeddingBag).check(data, n);
    }
  }

  /** Runs the stack; returns the output buffer (n·numOutputs valid entries). */
  private run(params: Float32Array, data: Examples, n: number): Float32Array {
    this.reserve(n);
    let input: Float32Array;
    if (data.kind === 'dense') input = data.x;
    else {
      (this.bag as EmbeddingBag).forward(params, this.bagOffset, data, n, this.bagOut);
      input = this.bagOut;
    }
    const layers = this.layers;
    for (let l = 0; l < layers.length; l++) {
      const out = this.acts[l] as Float32Array;
      (layers[l] as Layer).forward(params, this.offsets[l] as number, input, n, out);
      input = out;
    }
    return input;
  }

  forward(params: Float32Array, data: Examples): Float32Array {
    this.checkParams(params, 'params');
    this.checkData(data);
    const out = this.run(params, data, data.n);
    return out.slice(0, data.n * this.numOutputs);
  }

  lossAndGrad(params: Float32Array, batch: Examples, grad: Float32Array, inputGrad?: Float32Array): number {
    this.checkParams(params, 'params');
    this.checkParams(grad, 'grad');
    this.checkData(batch);
    const n = batch.n;
    if (inputGrad !== undefined) {
      if (batch.kind !== 'dense')
        throw new OrchardError('INVALID_ARGUMENT', 'input gradients exist only for dense inputs');
      if (inputGrad.length < n * batch.dim)
        throw new ShapeError(`inputGrad needs ${n * batch.dim} entries, got ${inputGrad.length}`);
    }
    if (this.loss === 'mse') {
      const targets = (batch as DenseExamples).targets;
      if (targets === undefined || targets.length < n * this.numOutputs)
        throw new OrchardError('DATA_INVALID', `mse loss needs ${n * this.numOutputs} regression targets`);
    }
    if (n === 0) return 0;
    const out = this.run(params, batch, n);
    const last = this.layers.length - 1;
    const dOut = this.dActs[last] as Float32Array;
    const scale = 1 / n;
    let total: number;
    if (this.loss === 'ce') total = softmaxCrossEntropy(out, batch.y, n, this.numOutputs, dOut, scale);
    else if (this.loss === 'logistic') total = binaryLogistic(out, batch.y, n, dOut, scale);
    else
      total = meanSquaredError(
        out,
        (batch as DenseExamples).targets as Float32Array,
        n,
        this.numOutputs,
        dOut,
        scale,
      );
    const layers = this.layers;
    for (let l = last; l >= 0; l--) {
      const x = l > 0 ? (this.acts[l - 1] as Float32Array) : batch.kind === 'dense' ? batch.x : this.bagOut;
      const dx =
        l > 0
          ? (this.dActs[l - 1] as Float32Array)
          : batch.kind === 'dense'
            ? (inputGrad ?? null)
            : this.dBagOut;
      (layers[l] as Layer).backward(
        params,
        this.offsets[l] as number,
        x,
        this.acts[l] as Float32Array,
        this.dActs[l] as Float32Array,
        n,
        grad,
        dx,
      );
    }
    if (this.bag !== null) this.bag.backward(this.bagOffset, batch as BagExamples, n, this.dBagOut, grad);
    return total / n;
  }
}

function positiveInt(x: number, path: string, issues: { path: string; message: string }[]): void {
  if (!(Number.isInteger(x) && x > 0)) issues.push({ path, message: `must be a positive integer, got ${x}` });
}

function check(issues: { path: string; message: string }[], what: string): void {
  if (issues.length > 0) throw new ConfigError(issues, what);
}

/** Multinomial logistic regression: one dense layer, zero-initialized (the problem is convex). */
export function softmaxRegression(inputDim: number, numClasses: number): SequentialModel {
  const issues: { path: string; message: string }[] = [];
  positiveInt(inputDim, 'inputDim', issues);
  positiveInt(numClasses, 'numClasses', issues);
  check(issues, 'softmax regression');
  return new SequentialModel('softmax', [new Dense(inputDim, numClasses, 'zeros')], 'ce', {
    kind: 'dense',
    dim: inputDim,
  });
}

/** Binary logistic regression: one logit per example (positive = class 1), labels in {0, 1}. */
export function logisticRegression(inputDim: number): SequentialModel {
  const issues: { path: string; message: string }[] = [];
  positiveInt(inputDim, 'inputDim', issues);
  check(issues, 'logistic regression');
  return new SequentialModel('logistic', [new Dense(inputDim, 1, 'zeros')], 'logistic', {
    kind: 'dense',
    dim: inputDim,
  });
}

/**
 * Fully connected network: dense → activation for each hidden width, then a dense output layer.
 * `loss: 'mse'` turns it into a regressor on DenseExamples.targets with numOutputs outputs.
 */
export function mlp(
  inputDim: number,
  hidden: readonly number[],
  numOutputs: number,
  activation: 'relu' | 'tanh' = 'relu',
  loss: 'ce' | 'mse' = 'ce',
): SequentialModel {
  const issues: { path: string; message: string }[] = [];
  positiveInt(inputDim, 'inputDim', issues);
  positiveInt(numOutputs, 'numClasses', issues);
  hidden.forEach((h, i) => {
    positiveInt(h, `hidden.${i}`, issues);
  });
  check(issues, 'mlp');
  const layers: Layer[] = [];
  let width = inputDim;
  for (const h of hidden) {
    layers.push(new Dense(width, h, activation === 'relu' ? 'he' : 'glorot'));
    layers.push(activation === 'relu' ? new Relu(h) : new Tanh(h));
    width = h;
  }
  layers.push(new Dense(width, numOutputs, 'glorot'));
  return new SequentialModel(
    `mlp(${[inputDim, ...hidden, numOutputs].join('-')},${activation})`,
    layers,
    loss,
    {
      kind: 'dense',
      dim: inputDim,
    },
  );
}

export interface CnnOptions {
  /** Image side; inputs are [channels][side][side]. */
  readonly side: number;
  readonly channels: number;
  /** Output channels of each conv → relu → 2×2 max-pool block. */
  readonly conv: readonly number[];
  readonly kernel: number;
  /** Width of the dense hidden layer before the output layer. */
  readonly hidden: number;
  readonly numClasses: number;
  /** Conv padding; 'same' (default) keeps the side, as in the classic MNIST CNN of McMahan et al. */
  readonly padding?: Padding;
}

/** conv → relu → pool blocks, flatten, dense → relu, dense output. */
export function cnn(options: CnnOptions): SequentialModel {
  const { side, channels, conv, kernel, hidden, numClasses } = options;
  const padding = options.padding ?? 'same';
  const issues: { path: string; message: string }[] = [];
  positiveInt(side, 'side', issues);
  positiveInt(channels, 'channels', issues);
  positiveInt(kernel, 'kernel', issues);
  positiveInt(hidden, 'hidden', issues);
  positiveInt(numClasses, 'numClasses', issues);
  if (conv.length === 0) issues.push({ path: 'conv', message: 'needs at least one conv block' });
  conv.forEach((c, i) => {
    positiveInt(c, `conv.${i}`, issues);
  });
  check(issues, 'cnn');
  const layers: Layer[] = [];
  let s = side;
  let c = channels;
  conv.forEach((outC, i) => {
    const convSide = padding === 'same' ? s : s - kernel + 1;
    if (convSide < 2)
      throw new ConfigError(
        [
          {
            path: `conv.${i}`,
            message: `a ${s}×${s} input is too small for kernel ${kernel} and 2×2 pooling`,
          },
        ],
        'cnn',
      );
    const layer = new Conv2d(c, s, outC, kernel, padding);
    layers.push(layer, new Relu(layer.outSize));
    const pool = new MaxPool2(outC, layer.outSide);
    layers.push(pool);
    s = pool.outSide;
    c = outC;
  });
  const flat = c * s * s;
  layers.push(
    new Flatten(flat),
    new Dense(flat, hidden, 'he'),
    new Relu(hidden),
    new Dense(hidden, numClasses),
  );
  return new SequentialModel(
    `cnn(${side}x${side}x${channels},conv=${conv.join('-')},k=${kernel})`,
    layers,
    'ce',
    {
      kind: 'dense',
      dim: side * side * channels,
    },
  );
}

/** Text classifier: mean of the bag's embeddings (fastText-style), then a dense output layer. */
export function embeddingBag(options: {
  readonly vocab: number;
  readonly embeddingDim: number;
  readonly numClasses: number;
}): SequentialModel {
  const { vocab, embeddingDim, numClasses } = options;
  const issues: { path: string; message: string }[] = [];
  positiveInt(vocab, 'vocab', issues);
  positiveInt(embeddingDim, 'embeddingDim', issues);
  positiveInt(numClasses, 'numClasses', issues);
  check(issues, 'embedding bag');
  const bag = new EmbeddingBag(vocab, embeddingDim);
  return new SequentialModel(
    `embedding_bag(${vocab}x${embeddingDim})`,
    [new Dense(embeddingDim, numClasses)],
    'ce',
    { kind: 'bags', bag },
  );
}
