import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import type { FederatedDataset } from '../data/types.ts';
import { createStrategy } from '../fl/index.ts';
import { type LocalTrainSpec, LocalTrainSpecSchema, StrategySpecSchema } from '../fl/spec.ts';
import type { Assignment, ClientUpdate, Strategy, TimerOutcome, UpdateOutcome } from '../fl/types.ts';
import { softmaxRegression } from '../nn/index.ts';
import type { Model } from '../nn/model.ts';
import { type SimulateOptions, simulate } from './simulate.ts';
import { type SimSpec, SimSpecSchema } from './spec.ts';
import type { RunSummary } from './types.ts';

/**
 * Wraps a real strategy and checks the driver's side of the contract from the strategy's point of
 * view: no client is started twice at once, the cap is respected, a dropped or abandoned client never
 * reports, and every report comes from an outstanding client.
 */
class Watched implements Strategy {
  readonly outstanding = new Set<number>();
  readonly gone = new Set<number>();
  maxOutstanding = 0;
  dropouts = 0;
  reports = 0;
  constructor(
    private readonly inner: Strategy,
    private readonly cap: number,
  ) {}
  get name(): string {
    return this.inner.name;
  }
  get version(): number {
    return this.inner.version;
  }
  get params(): Float32Array {
    return this.inner.params;
  }
  demand(now: number, inFlight: number, concurrency: number): number {
    assert.equal(inFlight, this.outstanding.size, 'driver in-flight count matches the strategy view');
    return this.inner.demand(now, inFlight, concurrency);
  }
  assign(clientId: number, now: number): Assignment {
    assert.ok(!this.outstanding.has(clientId), `client ${clientId} started twice`);
    assert.ok(!this.abandoned.has(clientId), `abandoned client ${clientId} restarted before release`);
    this.outstanding.add(clientId);
    this.gone.delete(clientId);
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding.size);
    assert.ok(this.outstanding.size <= this.cap, `in flight ${this.outstanding.size} > cap ${this.cap}`);
    return this.inner.assign(clientId, now);
  }
  readonly abandoned = new Set<number>();
  private settle(abandoned: readonly number[]): void {
    for (const c of abandoned) {
      assert.ok(this.outstanding.delete(c), `abandoned client ${c} was not in flight`);
      this.gone.add(c);
      this.abandoned.add(c);
    }
  }
  onUpdate(update: ClientUpdate, now: number): UpdateOutcome {
    assert.ok(!this.gone.has(update.clientId), `dropped/abandoned client ${update.clientId} reported`);
    assert.ok(this.outstanding.delete(update.clientId), `client ${update.clientId} was not in flight`);
    this.reports++;
    const out = this.inner.onUpdate(update, now);
    if (out.kind === 'accepted') this.settle(out.abandoned);
    return out;
  }
  onDropout(clientId: number, now: number): void {
    // Cancelled (abandoned) trips are released through onDropout too.
    if (!this.abandoned.delete(clientId)) {
      assert.ok(this.outstanding.delete(clientId), `dropout of client ${clientId} that was not in flight`);
      this.gone.add(clientId);
      this.dropouts++;
    }
    this.inner.onDropout(clientId, now);
  }
  nextDeadline(): number {
    return this.inner.nextDeadline();
  }
  onTimer(now: number): TimerOutcome {
    const out = this.inner.onTimer(now);
    this.settle(out.abandoned);
    return out;
  }
}

function smallProblem(numClients = 30): { dataset: FederatedDataset; model: Model } {
  const dataset = syntheticDataset({
    alpha: 1,
    beta: 1,
    numClients,
    dim: 20,
    numClasses: 5,
    examplesPerClient: 20,
    examplesSigma: 0,
    testSize: 500,
    seed: 11,
  });
  return { dataset, model: softmaxRegression(20, 5) };
}

const LOCAL: LocalTrainSpec = LocalTrainSpecSchema.parse({ epochs: 1, batchSize: 10, lr: 0.05 });

function run(
  sim: Partial<SimSpec>,
  strategySpec: unknown = { kind: 'fedbuff', bufferSize: 5 },
  extra: Partial<SimulateOptions> & { numClients?: number; cap?: number } = {},
): { summary: RunSummary; watched: Watched } {
  const { dataset, model } = smallProblem(extra.numClients);
  const parsedSim = SimSpecSchema.parse(sim);
  const strategy = createStrategy(StrategySpecSchema.parse(strategySpec), model.init(new Rng(3)));
  const watched = new Watched(strategy, extra.cap ?? Math.min(parsedSim.concurrency, dataset.numClients));
  const summary = simulate({
    dataset,
    model,
    strategy: watched,
    local: extra.local ?? LOCAL,
    sim: parsedSim,
    label: 'test',
    ...(extra.onProgress !== undefined ? { onProgress: extra.onProgress } : {}),
  });
  return { summary, watched };
}

const withoutWall = (s: RunSummary) => ({ ...s, wallSeconds: 0 });

test('same seed gives an identical summary; another seed a different one', () => {
  const sim = {
    concurrency: 8,
    maxTrips: 300,
    evalEvery: 5,
    dropoutProbability: 0.1,
    speedSigma: 0.5,
    seed: 4,
  };
  const a = run(sim).summary;
  const b = run(sim).summary;
  assert.deepEqual(withoutWall(a), withoutWall(b));
  const c = run({ ...sim, seed: 5 }).summary;
  assert.notDeepEqual(withoutWall(a).curve, withoutWall(c).curve);
});

test('concurrency never exceeds the cap and saturate keeps it full', () => {
  const { summary, watched } = run({ concurrency: 7, maxTrips: 400 });
  assert.equal(watched.maxOutstanding, 7);
  assert.equal(summary.counts.completed, 400);
  // Saturated: after the last completion the slot was refilled, so 7 are still in flight.
  assert.equal(summary.counts.started, 400 + 7);
  for (const p of summary.curve) assert.ok(p.inFlight <= 7);
});

test('a population smaller than the concurrency caps in-flight clients at the population', () => {
  const { watched, summary } = run({ concurrency: 50, maxTrips: 200 }, undefined, { numClients: 6 });
  assert.equal(watched.maxOutstanding, 6);
  assert.equal(summary.counts.completed, 200);
});

test('dropouts are counted, reported to the strategy, never delivered, and download only', () => {
  const p = 0.3;
  const { summary, watched } = run({ concurrency: 10, maxTrips: 1000, dropoutProbability: p });
  const { started, completed, droppedOut } = summary.counts;
  assert.equal(droppedOut, watched.dropouts);
  assert.equal(completed, watched.reports);
  assert.equal(started, completed + droppedOut + watched.outstanding.size);
  // Binomial(started, 0.3): within 5 standard deviations.
  const sd = Math.sqrt(started * p * (1 - p));
  assert.ok(Math.abs(droppedOut - started * p) < 5 * sd, `dropped ${droppedOut} of ${started}`);
  const bytes = 4 * (20 * 5 + 5);
  assert.equal(summary.bytesDown, started * bytes);
  assert.equal(summary.bytesUp, completed * bytes);
});

test('sync rounds abandon their stragglers, whose late updates never arrive', () => {
  // 15 selected per round, the round closes at 10 updates: exactly 5 stragglers abandoned per round.
  const { summary, watched } = run(
    { concurrency: 15, maxVersions: 12, duration: { kind: 'exponential', mean: 1 } },
    { kind: 'sync', cohortSize: 10, overSelection: 0.5 },
  );
  assert.equal(summary.stopReason, 'max_versions');
  assert.equal(summary.counts.completed, 10 * 12);
  assert.equal(summary.counts.accepted, 10 * 12);
  assert.equal(summary.counts.abandoned, 5 * 12);
  assert.deepEqual(summary.counts.rejected, {});
  assert.deepEqual(summary.stalenessHistogram, [120]);
  assert.equal(watched.maxOutstanding, 15);
});

test('sync round timeouts close rounds on the strategy deadline', () => {
  // Durations uniform in [0, 10], timeout 3: each round closes at its deadline with the early ones.
  const { summary } = run(
    { concurrency: 20, maxVersions: 5, duration: { kind: 'uniform', min: 0, max: 10 } },
    { kind: 'sync', cohortSize: 20, overSelection: 0, roundTimeout: 3 },
  );
  assert.equal(summary.stopReason, 'max_versions');
  assert.ok(summary.counts.abandoned > 0);
  // Every round lasts exactly 3 s (all start at the round's opening, none can fill the cohort of 20
  // before the timeout with probability ~1), so version 5 is reached at t = 15.
  assert.ok(Math.abs(summary.virtualSeconds - 15) < 1e-9, `t = ${summary.virtualSeconds}`);
});

test('constant durations and bandwidths give exact trip times', () => {
  // One client at a time, 105 params = 420 bytes: 420/42 = 10 s down, 420/210 = 2 s up, 3 s training.
  const { summary } = run({
    concurrency: 1,
    maxTrips: 5,
    duration: { kind: 'constant', value: 3 },
    downloadBandwidth: 42,
    uploadBandwidth: 210,
  });
  assert.equal(summary.virtualSeconds, 5 * 15);
});

test('per-example durations scale with the client size', () => {
  // 20 examples × 0.5 s = 10 s per trip, one client at a time.
  const { summary } = run({
    concurrency: 1,
    maxTrips: 3,
    duration: { kind: 'per_example', secondsPerExample: 0.5 },
  });
  assert.equal(summary.virtualSeconds, 30);
});

test('constant check-ins: clients that find no free slot are turned away', () => {
  // Rate 1/s, cap 2, 5 s trips. Hand-simulated: starts at t = 1,2,6,7,11,12,16,17; completions at
  // 6,7,11,12,16,17; check-ins at 3-5, 8-10, 13-15, 18-20 are turned away.
  const { summary } = run({
    concurrency: 2,
    arrival: { kind: 'constant', rate: 1 },
    duration: { kind: 'constant', value: 5 },
    maxTime: 20,
  });
  assert.equal(summary.stopReason, 'max_time');
  assert.equal(summary.virtualSeconds, 20);
  assert.equal(summary.counts.started, 8);
  assert.equal(summary.counts.completed, 6);
  assert.equal(summary.counts.turnedAway, 12);
});

test('poisson check-ins arrive at the configured rate', () => {
  const { summary } = run({
    concurrency: 1000,
    arrival: { kind: 'poisson', rate: 4 },
    duration: { kind: 'constant', value: 0.01 },
    maxTime: 500,
  });
  // Poisson(2000) check-ins, all admitted: within 5 standard deviations.
  const n = summary.counts.started + (summary.counts.turnedAway ?? 0);
  assert.ok(Math.abs(n - 2000) < 5 * Math.sqrt(2000), `${n} check-ins`);
});

test('stop conditions: max time, trips, versions', () => {
  const t = run({ concurrency: 5, maxTime: 7.5 }).summary;
  assert.equal(t.stopReason, 'max_time');
  assert.equal(t.virtualSeconds, 7.5);
  assert.ok((t.curve.at(-1)?.time ?? 0) <= 7.5);
  const trips = run({ concurrency: 5, maxTrips: 123 }).summary;
  assert.equal(trips.stopReason, 'max_trips');
  assert.equal(trips.counts.completed, 123);
  assert.equal(trips.curve.at(-1)?.trips, 123);
  const versions = run({ concurrency: 5, maxVersions: 9, evalEvery: 4 }).summary;
  assert.equal(versions.stopReason, 'max_versions');
  assert.deepEqual(
    versions.curve.map((p) => p.version),
    [0, 4, 8, 9],
  );
});

test('target accuracy stops the run at the first crossing', () => {
  const { summary } = run({ concurrency: 5, targetAccuracy: 0.5, maxTrips: 20_000, evalEvery: 2 });
  assert.equal(summary.stopReason, 'target_reached');
  const hit = summary.toTarget;
  assert.ok(hit !== undefined);
  const last = summary.curve.at(-1);
  assert.ok(last !== undefined && last.accuracy >= 0.5);
  assert.equal(hit.version, last.version);
  assert.equal(hit.trips, last.trips);
  for (const p of summary.curve.slice(0, -1)) assert.ok(p.accuracy < 0.5);
});

test('no stop condition is a ConfigError; a bad sim field is reported with its path', () => {
  const { dataset, model } = smallProblem();
  const strategy = createStrategy(StrategySpecSchema.parse({ kind: 'fedbuff' }), model.init(new Rng(1)));
  const base = { dataset, model, strategy, local: LOCAL, label: 'x' };
  assert.throws(() => simulate({ ...base, sim: SimSpecSchema.parse({}) }), ConfigError);
  assert.throws(
    () => simulate({ ...base, sim: { ...SimSpecSchema.parse({ maxTrips: 5 }), concurrency: -1 } }),
    (e: unknown) => e instanceof ConfigError && e.issues.some((i) => i.path === 'sim.concurrency'),
  );
  assert.equal(strategy.version, 0);
});

test('a huge learning rate diverges with a clear message and keeps the curve so far', () => {
  const { summary } = run({ concurrency: 5, maxTrips: 5000, evalEvery: 1 }, undefined, {
    local: { ...LOCAL, lr: 1e38 },
  });
  assert.equal(summary.stopReason, 'diverged');
  assert.match(summary.stopMessage ?? '', /non-finite|loss is/);
  assert.ok(summary.curve.length >= 1);
  for (const p of summary.curve) assert.ok(Number.isFinite(p.loss));
  assert.ok(summary.counts.completed < 5000);
  // A huge server step instead: the model's logits overflow and the evaluation loss is NaN.
  const server = run(
    { concurrency: 5, maxTrips: 5000, evalEvery: 1 },
    {
      kind: 'fedbuff',
      bufferSize: 5,
      serverOptimizer: { kind: 'sgd', lr: 3e38 },
    },
  ).summary;
  assert.equal(server.stopReason, 'diverged');
  assert.match(server.stopMessage ?? '', /loss is NaN|non-finite/);
  assert.ok(server.curve.length >= 1);
  for (const p of server.curve) assert.ok(Number.isFinite(p.loss));
});

test('FedBuff on a small Synthetic(1,1) problem learns well above chance', () => {
  const progress: number[] = [];
  const { summary } = run({ concurrency: 5, maxTrips: 4000, evalEvery: 50, seed: 2 }, undefined, {
    onProgress: (p) => progress.push(p.trips),
  });
  const first = summary.curve[0];
  assert.ok(first !== undefined && first.version === 0);
  // 5 classes: chance is 0.2.
  assert.ok(summary.finalAccuracy > 0.6, `final accuracy ${summary.finalAccuracy}`);
  assert.ok(summary.finalAccuracy > first.accuracy + 0.3);
  assert.ok(summary.finalLoss < first.loss);
  assert.equal(progress.at(-1), 4000);
  assert.ok(summary.stalenessHistogram.reduce((a, b) => a + b, 0) === summary.counts.accepted);
});
