/**
 * Simulator throughput: client trips per second of wall time for FedBuff (K = 10, polynomial
 * staleness weights, server SGD lr 1) on LEAF Synthetic(1,1) — 60 features, 10 classes, 20 examples
 * per client, a population of 1,000,000 lazily generated clients — with 1,000 clients in flight,
 * half-normal training times (σ = 1 s), softmax regression trained for 1 local epoch at batch 10.
 * Evaluation is rare (every 10,000 versions, on a fixed 1,000-example subset) so the figure measures
 * the engine: event handling, client data generation, local training and aggregation per trip.
 * A 10,000-trip warm-up run (JIT) precedes the measured 200,000-trip run.
 */
import { Rng } from '../src/core/rng.ts';
import { syntheticDataset } from '../src/data/synthetic.ts';
import { createStrategy } from '../src/fl/index.ts';
import { LocalTrainSpecSchema, StrategySpecSchema } from '../src/fl/spec.ts';
import { softmaxRegression } from '../src/nn/index.ts';
import { simulate } from '../src/sim/simulate.ts';
import { SimSpecSchema } from '../src/sim/spec.ts';
import type { BenchEntry } from './harness.ts';

const TRIPS = 200_000;

function fedbuffRun(trips: number): { tripsPerSecond: number; completed: number } {
  const dataset = syntheticDataset({
    alpha: 1,
    beta: 1,
    numClients: 1_000_000,
    dim: 60,
    numClasses: 10,
    examplesPerClient: 20,
    examplesSigma: 0,
    testSize: 2000,
    seed: 1,
  });
  const model = softmaxRegression(60, 10);
  const strategy = createStrategy(
    StrategySpecSchema.parse({ kind: 'fedbuff', bufferSize: 10 }),
    model.init(new Rng(1)),
  );
  const start = performance.now();
  const summary = simulate({
    dataset,
    model,
    strategy,
    local: LocalTrainSpecSchema.parse({ epochs: 1, batchSize: 10, lr: 0.05 }),
    sim: SimSpecSchema.parse({
      concurrency: 1000,
      arrival: { kind: 'saturate' },
      duration: { kind: 'half_normal', sigma: 1, offset: 0 },
      maxTrips: trips,
      evalEvery: 10_000,
      evalSubset: 1000,
      seed: 1,
    }),
    label: 'FedBuff (K=10)',
  });
  const seconds = (performance.now() - start) / 1000;
  return { tripsPerSecond: summary.counts.completed / seconds, completed: summary.counts.completed };
}

export async function run(): Promise<BenchEntry[]> {
  fedbuffRun(10_000);
  const { tripsPerSecond, completed } = fedbuffRun(TRIPS);
  const peakMb = process.resourceUsage().maxRSS / 1024;
  return [
    {
      name: 'sim.fedbuff_trips_per_s',
      value: tripsPerSecond,
      unit: 'trips/s',
      baseline: null,
      ratio: null,
      goal: '≥ 20000',
      note: `FedBuff K=10, Synthetic(1,1) 60 features/10 classes/20 examples, 1M clients, concurrency 1000, half-normal durations, 1 epoch batch 10; ${completed} trips, wall time of the whole simulate() call`,
    },
    {
      name: 'sim.fedbuff_peak_rss',
      value: peakMb,
      unit: 'MB',
      baseline: null,
      ratio: null,
      goal: '≤ 1024',
      note: 'peak resident set of the bench process (maxRSS) after the 200,000-trip run',
    },
  ];
}
