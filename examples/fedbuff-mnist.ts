/**
 * Library use without the CLI: FedBuff training an MLP on label-skewed MNIST with 10% dropouts.
 * Run: npx tsx examples/fedbuff-mnist.ts
 */
import { Rng } from '../src/core/rng.ts';
import { createDataset } from '../src/data/index.ts';
import { createStrategy } from '../src/fl/index.ts';
import { createModel } from '../src/nn/index.ts';
import { simulate } from '../src/sim/index.ts';

const dataset = createDataset(
  { kind: 'mnist', numClients: 1000, partition: { kind: 'dirichlet', alpha: 0.5 }, testFraction: 0.15 },
  1,
);
const model = createModel({ kind: 'mlp', hidden: [64], activation: 'relu' }, dataset);
const strategy = createStrategy(
  {
    kind: 'fedbuff',
    bufferSize: 10,
    staleness: { kind: 'polynomial', exponent: 0.5 },
    maxStaleness: 100,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  },
  model.init(new Rng(1)),
);
const trips = Number(process.argv[2] ?? 20000);
const run = simulate({
  dataset,
  model,
  strategy,
  label: 'FedBuff',
  local: { epochs: 1, batchSize: 10, lr: 0.1 },
  sim: {
    concurrency: 100,
    arrival: { kind: 'saturate' },
    duration: { kind: 'half_normal', sigma: 1, offset: 0 },
    speedSigma: 0.5,
    dropoutProbability: 0.1,
    uploadBandwidth: 0,
    downloadBandwidth: 0,
    maxTrips: trips,
    evalEvery: 10,
    seed: 1,
  },
});
console.log(
  JSON.stringify({
    finalAccuracy: run.finalAccuracy,
    versions: run.curve.at(-1)?.version,
    virtualSeconds: run.virtualSeconds,
    counts: run.counts,
  }),
);
