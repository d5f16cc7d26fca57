import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { syntheticDataset } from '../../data/synthetic.ts';
import { softmaxRegression } from '../../nn/models.ts';
import { noiseMultiplierFor } from '../../privacy/dp/calibrate.ts';
import { pldEpsilon } from '../../privacy/dp/pld.ts';
import { rdpEpsilon } from '../../privacy/dp/rdp.ts';
import { simulate } from '../../sim/simulate.ts';
import { SimSpecSchema } from '../../sim/spec.ts';
import { createStrategy } from '../index.ts';
import { LocalTrainSpecSchema, type PrivacySpec, StrategySpecSchema } from '../spec.ts';
import type { ClientUpdate, Strategy } from '../types.ts';
import { DpAggregator, isPrivate, resolvePrivacy } from './dp.ts';
import { FedBuff } from './fedbuff.ts';
import { SyncRounds } from './sync.ts';

function randomVector(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function privacy(extra: Partial<PrivacySpec> = {}): PrivacySpec {
  return { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, population: 1000, accountant: 'rdp', ...extra };
}

function fedbuff(init: Float32Array, k: number, p?: PrivacySpec): FedBuff {
  return new FedBuff(
    {
      bufferSize: k,
      staleness: { kind: 'constant' },
      maxStaleness: 1000,
      serverOptimizer: { kind: 'sgd', lr: 1 },
      ...(p !== undefined ? { privacy: p } : {}),
    },
    init,
  );
}

/** Assigns K clients at the current version and reports the given deltas; returns the outcomes. */
function feed(s: Strategy, deltas: readonly Float32Array[], numExamples = 7, firstId = 0) {
  const version = s.version;
  const ids = deltas.map((_, i) => firstId + i);
  for (const id of ids) s.assign(id, 0);
  return deltas.map((delta, i) => {
    const update: ClientUpdate = { clientId: ids[i] as number, baseVersion: version, delta, numExamples };
    return s.onUpdate(update, 0);
  });
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i] as number) - (b[i] as number)) ** 2;
  return Math.sqrt(s);
}

test('DP-FedBuff with σ = 0 and a huge clip norm equals plain FedBuff and the hand-computed mean (uniform weights)', () => {
  const d = 50;
  const k = 4;
  const init = randomVector(d, 1);
  const plain = fedbuff(init, k);
  const dp = fedbuff(init, k, privacy({ clipNorm: 1e9, noiseMultiplier: 0 }));
  assert.equal(dp.name, 'dp-fedbuff');
  const expected = Float64Array.from(init);
  for (let round = 0; round < 3; round++) {
    const deltas = Array.from({ length: k }, (_, i) => randomVector(d, 100 + 10 * round + i, 0.1));
    // Second method: x ← x − mean(Δ), in float64.
    for (let j = 0; j < d; j++) {
      let mean = 0;
      for (const delta of deltas) mean += (delta[j] as number) / k;
      expected[j] = (expected[j] as number) - mean;
    }
    // Same example count everywhere: FedBuff's example weights are then uniform too.
    feed(plain, deltas, 7, round * k);
    const outs = feed(dp, deltas, 7, round * k);
    assert.ok(outs.every((o) => o.kind === 'accepted' && o.weight === 1));
  }
  assert.equal(dp.version, 3);
  for (let j = 0; j < d; j++) {
    assert.ok(Math.abs((dp.params[j] as number) - (plain.params[j] as number)) < 1e-6, `plain ${j}`);
    assert.ok(Math.abs((dp.params[j] as number) - (expected[j] as number)) < 1e-5, `mean ${j}`);
  }
  assert.equal(dp.privacySpent?.().epsilon, Number.POSITIVE_INFINITY, 'σ = 0 buys no privacy');
  assert.equal(isPrivate(plain), false);
  assert.equal(isPrivate(dp), true);
});

test('DP-FedAvgM with σ = 0 and a huge clip equals FedAvgM (uniform weights), over several rounds', () => {
  const d = 30;
  const cohort = 3;
  const init = randomVector(d, 2);
  const opts = {
    cohortSize: cohort,
    overSelection: 0,
    roundTimeout: Number.POSITIVE_INFINITY,
    minUpdates: 1,
    serverOptimizer: { kind: 'momentum', lr: 0.5, momentum: 0.9, nesterov: false } as const,
  };
  const plain = new SyncRounds(opts, init);
  const dp = new SyncRounds({ ...opts, privacy: privacy({ clipNorm: 1e9, noiseMultiplier: 0 }) }, init);
  assert.equal(dp.name, 'dp-fedavgm');
  for (let round = 0; round < 4; round++) {
    const deltas = Array.from({ length: cohort }, (_, i) => randomVector(d, 200 + 10 * round + i, 0.2));
    feed(plain, deltas, 5, round * cohort);
    feed(dp, deltas, 5, round * cohort);
  }
  assert.equal(dp.version, 4);
  for (let j = 0; j < d; j++)
    assert.ok(Math.abs((dp.params[j] as number) - (plain.params[j] as number)) < 1e-5, `param ${j}`);
});

test('clipping bounds one adversarial update: a giant delta moves the model by at most C/K (σ = 0)', () => {
  const d = 1000;
  const k = 5;
  const clip = 0.8;
  const init = randomVector(d, 3);
  const dp = fedbuff(init, k, privacy({ clipNorm: clip, noiseMultiplier: 0 }));
  const giant = randomVector(d, 4, 1e6);
  const zeros = Array.from({ length: k - 1 }, () => new Float32Array(d));
  feed(dp, [giant, ...zeros]);
  assert.equal(dp.version, 1);
  const moved = l2(dp.params, init);
  assert.ok(moved <= (clip / k) * (1 + 1e-5), `moved ${moved} > C/K = ${clip / k}`);
  assert.ok(moved >= (clip / k) * (1 - 1e-4), `moved ${moved}: the giant should be clipped, not dropped`);
  // Without clipping the same update would move it by ‖giant‖/K ≫ C/K.
  const plain = fedbuff(init, k);
  feed(plain, [giant, ...zeros]);
  assert.ok(l2(plain.params, init) > 1e3);
});

test('the noise on a step has standard deviation σC/K and mean 0 (cryptographic source)', () => {
  const d = 40_000;
  const k = 5;
  const clip = 2;
  const sigma = 1.5;
  const init = new Float32Array(d);
  const dp = fedbuff(init, k, privacy({ clipNorm: clip, noiseMultiplier: sigma }));
  feed(
    dp,
    Array.from({ length: k }, () => new Float32Array(d)),
  );
  let sum = 0;
  let sumSq = 0;
  for (const v of dp.params) {
    sum += v;
    sumSq += v * v;
  }
  const mean = sum / d;
  const std = Math.sqrt(sumSq / d - mean * mean);
  const expected = (sigma * clip) / k;
  // Sample std of d normals has relative standard error ≈ 1/√(2d) ≈ 0.35%; allow ~6 of them.
  assert.ok(Math.abs(std / expected - 1) < 0.02, `std ${std} vs σC/K = ${expected}`);
  assert.ok(Math.abs(mean) < (5 * expected) / Math.sqrt(d), `mean ${mean}`);
});

test('ε after T steps matches independent RDP accounting, and Opacus’s published value (q=0.04, σ=1.5, T=2250)', () => {
  const k = 10;
  const dp = fedbuff(new Float32Array(3), k, privacy({ noiseMultiplier: 1.5, population: 250 }));
  const zero = Array.from({ length: k }, () => new Float32Array(3));
  for (let t = 0; t < 2250; t++) feed(dp, zero, 1, t * k);
  const spent = dp.privacySpent?.();
  assert.equal(spent?.steps, 2250);
  assert.equal(spent?.delta, 1e-5);
  const batch = rdpEpsilon({ noiseMultiplier: 1.5, samplingRate: 0.04, steps: 2250, delta: 1e-5 }).epsilon;
  assert.ok(Math.abs((spent?.epsilon as number) - batch) < 1e-9, `${spent?.epsilon} vs ${batch}`);
  // Opacus's RDP accountant test: ε = 7.32911117143 for these parameters.
  assert.ok(Math.abs((spent?.epsilon as number) - 7.32911117143) < 1e-6, `${spent?.epsilon}`);
});

test('a target ε calibrates σ before the run; planned steps then spend at most the target', () => {
  const p = privacy({ noiseMultiplier: undefined, targetEpsilon: 2, plannedSteps: 40, population: 100 });
  delete (p as { noiseMultiplier?: number }).noiseMultiplier;
  const resolved = resolvePrivacy(p, 10);
  const sigma = noiseMultiplierFor({ epsilon: 2, delta: 1e-5, samplingRate: 0.1, steps: 40 });
  assert.equal(resolved.noiseMultiplier, sigma);
  assert.equal(resolved.samplingRate, 0.1);
  const eps = rdpEpsilon({ noiseMultiplier: sigma, samplingRate: 0.1, steps: 40, delta: 1e-5 }).epsilon;
  assert.ok(eps <= 2 && eps > 1.99, `ε(σ) = ${eps}`);
});

test('the budget look-ahead refuses the step that would exceed it, and the strategy fails closed', () => {
  const k = 2;
  const budget = rdpEpsilon({ noiseMultiplier: 1, samplingRate: 0.1, steps: 3, delta: 1e-5 }).epsilon + 1e-9;
  const dp = fedbuff(new Float32Array(4), k, privacy({ population: 20, budget: { epsilon: budget } }));
  const zero = [new Float32Array(4), new Float32Array(4)];
  for (let t = 0; t < 3; t++) {
    assert.equal(dp.wouldExceedBudget?.(), false, `step ${t}`);
    feed(dp, zero, 1, t * k);
  }
  assert.equal(dp.version, 3);
  assert.equal(dp.wouldExceedBudget?.(), true);
  dp.assign(100, 0);
  dp.onUpdate({ clientId: 100, baseVersion: 3, delta: new Float32Array(4), numExamples: 1 }, 0);
  dp.assign(101, 0);
  assert.throws(
    () => dp.onUpdate({ clientId: 101, baseVersion: 3, delta: new Float32Array(4), numExamples: 1 }, 0),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_STATE',
  );
  assert.equal(dp.version, 3);
});

test('the simulator stops cleanly at the budget with stopReason privacy_budget and reports ε', () => {
  const dataset = syntheticDataset({
    alpha: 1,
    beta: 1,
    numClients: 40,
    dim: 10,
    numClasses: 3,
    examplesPerClient: 10,
    examplesSigma: 0,
    testSize: 200,
    seed: 5,
  });
  const model = softmaxRegression(10, 3);
  const budget = rdpEpsilon({ noiseMultiplier: 1.2, samplingRate: 4 / 40, steps: 6, delta: 1e-4 }).epsilon;
  const spec = StrategySpecSchema.parse({
    kind: 'fedbuff',
    bufferSize: 4,
    privacy: {
      clipNorm: 1,
      noiseMultiplier: 1.2,
      delta: 1e-4,
      population: 40,
      budget: { epsilon: budget + 1e-9 },
    },
  });
  const summary = simulate({
    dataset,
    model,
    strategy: createStrategy(spec, model.init(new Rng(1))),
    local: LocalTrainSpecSchema.parse({ epochs: 1, batchSize: 5, lr: 0.1 }),
    sim: SimSpecSchema.parse({ concurrency: 8, maxTrips: 10_000, evalEvery: 2 }),
    label: 'dp',
  });
  assert.equal(summary.stopReason, 'privacy_budget');
  assert.match(summary.stopMessage ?? '', /privacy budget/);
  assert.equal(summary.privacy?.steps, 6);
  assert.ok(Math.abs((summary.privacy?.epsilon as number) - budget) < 1e-9);
  assert.ok((summary.privacy?.epsilon as number) <= budget + 1e-9);
  assert.equal(summary.privacy?.noiseMultiplier, 1.2);
  assert.equal(summary.privacy?.accountant, 'rdp');
  const last = summary.curve[summary.curve.length - 1];
  assert.equal(last?.version, 6);
  assert.ok(Math.abs((last?.epsilon as number) - budget) < 1e-9);
  assert.equal(summary.curve[0]?.epsilon, 0);
  assert.ok(
    summary.curve.every(
      (p, i) => i === 0 || (p.epsilon as number) >= (summary.curve[i - 1]?.epsilon as number),
    ),
  );
});

test('a non-finite update is rejected by the DP path and changes nothing', () => {
  const agg = new DpAggregator(resolvePrivacy(privacy(), 3), 4);
  const bad = Float32Array.of(1, Number.NaN, 0, 0);
  const out = agg.add(bad, 1);
  assert.ok('kind' in out && out.kind === 'rejected' && out.reason === 'non_finite');
  assert.equal(agg.pending, 0);
  // Through a strategy: rejected, no step, version unchanged.
  const dp = fedbuff(new Float32Array(4), 1, privacy({ noiseMultiplier: 0 }));
  const [o] = feed(dp, [Float32Array.of(Number.POSITIVE_INFINITY, 0, 0, 0)]);
  assert.equal(o?.kind, 'rejected');
  assert.equal(dp.version, 0);
});

test('adaptive clipping: the accounted σ is the combined one, the applied σ smaller, and the clip norm moves', () => {
  const spec = privacy({
    clipNorm: undefined,
    adaptive: { targetQuantile: 0.5, initialClipNorm: 1, learningRate: 0.2, countNoiseMultiplier: 2 },
  });
  delete (spec as { clipNorm?: number }).clipNorm;
  const resolved = resolvePrivacy(spec, 5);
  assert.equal(resolved.noiseMultiplier, 1);
  // z⁻² = σ_Δ⁻² + (2σ_b)⁻² with z = 1, σ_b = 2 → σ_Δ = 1/√(1 − 1/16).
  assert.ok(Math.abs(resolved.updateNoiseMultiplier - 1 / Math.sqrt(15 / 16)) < 1e-12);
  const dp = fedbuff(new Float32Array(10), 5, spec);
  // Every norm is far above the clip: the noisy unclipped fraction is ≈ 0 < 0.5, so C grows.
  feed(
    dp,
    Array.from({ length: 5 }, (_, i) => randomVector(10, 50 + i, 100)),
  );
  assert.ok((dp.privacyReport?.().clipNorm as number) !== 1);
});

test('bad privacy configs give ConfigErrors naming the fields', () => {
  const parse = (privacyBlock: unknown) =>
    StrategySpecSchema.safeParse({ kind: 'fedbuff', bufferSize: 5, privacy: privacyBlock });
  const both = parse({
    clipNorm: 1,
    adaptive: { targetQuantile: 0.5, initialClipNorm: 1, countNoiseMultiplier: 1 },
    noiseMultiplier: 1,
    delta: 1e-5,
  });
  assert.equal(both.success, false);
  assert.ok(both.error?.issues.some((i) => i.path.join('.') === 'privacy.clipNorm'));
  const neither = parse({ clipNorm: 1, delta: 1e-5 });
  assert.ok(neither.error?.issues.some((i) => i.path.join('.') === 'privacy.noiseMultiplier'));
  const noSteps = parse({ clipNorm: 1, targetEpsilon: 1, delta: 1e-5 });
  assert.ok(noSteps.error?.issues.some((i) => i.path.join('.') === 'privacy.plannedSteps'));
  const badDelta = parse({ clipNorm: 1, noiseMultiplier: 1, delta: 2 });
  assert.ok(badDelta.error?.issues.some((i) => i.path.join('.') === 'privacy.delta'));
  assert.equal(parse({ clipNorm: 1, noiseMultiplier: 1, delta: 1e-5 }).success, true);
  assert.equal(StrategySpecSchema.safeParse({ kind: 'fedasync', privacy: { clipNorm: 1 } }).success, false);

  const fieldsOf = (f: () => unknown): string[] => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.issues.map((i) => i.path);
    }
    assert.fail('expected a ConfigError');
  };
  const withoutPopulation = privacy();
  delete (withoutPopulation as { population?: number }).population;
  assert.deepEqual(
    fieldsOf(() => resolvePrivacy(withoutPopulation, 5)),
    ['privacy.population'],
  );
  assert.deepEqual(
    fieldsOf(() => resolvePrivacy(privacy({ population: 3 }), 5)),
    ['privacy.population'],
  );
  const unreachable = privacy({ targetEpsilon: 1e-6, plannedSteps: 1_000_000, population: 10 });
  delete (unreachable as { noiseMultiplier?: number }).noiseMultiplier;
  assert.deepEqual(
    fieldsOf(() => resolvePrivacy(unreachable, 10)),
    ['privacy.targetEpsilon'],
  );
  const adaptiveTooNoisy = privacy({
    noiseMultiplier: 4,
    adaptive: { targetQuantile: 0.5, initialClipNorm: 1, learningRate: 0.2, countNoiseMultiplier: 1 },
  });
  delete (adaptiveTooNoisy as { clipNorm?: number }).clipNorm;
  assert.deepEqual(
    fieldsOf(() => resolvePrivacy(adaptiveTooNoisy, 5)),
    ['privacy.adaptive.countNoiseMultiplier'],
  );
});

test('the PLD accountant: ε matches pldEpsilon for the same (q, σ, T), is below RDP’s, and its budget stops on time', () => {
  const k = 5;
  const p = privacy({ noiseMultiplier: 1.2, population: 50, accountant: 'pld' });
  const steps = 4;
  const pldRef = pldEpsilon({ noiseMultiplier: 1.2, samplingRate: 0.1, steps, delta: 1e-5 });
  const rdpRef = rdpEpsilon({ noiseMultiplier: 1.2, samplingRate: 0.1, steps, delta: 1e-5 }).epsilon;
  assert.ok(pldRef < rdpRef, `PLD ${pldRef} should be tighter than RDP ${rdpRef}`);
  // Budget between ε(4) and ε(5): exactly 4 steps are allowed.
  const next = pldEpsilon({ noiseMultiplier: 1.2, samplingRate: 0.1, steps: steps + 1, delta: 1e-5 });
  const dp = fedbuff(new Float32Array(3), k, { ...p, budget: { epsilon: (pldRef + next) / 2 } });
  const zero = Array.from({ length: k }, () => new Float32Array(3));
  for (let t = 0; t < steps; t++) {
    assert.equal(dp.wouldExceedBudget?.(), false, `step ${t}`);
    feed(dp, zero, 1, t * k);
  }
  assert.equal(dp.wouldExceedBudget?.(), true);
  assert.ok(Math.abs((dp.privacySpent?.().epsilon as number) - pldRef) < 1e-12);
  assert.equal(dp.privacyReport?.().accountant, 'pld');
});

test('DP-FedAvg keeps the fixed denominator: a timed-out round with 2 of 4 updates steps by sum/4, not the mean', () => {
  const d = 6;
  const init = new Float32Array(d);
  const sync = new SyncRounds(
    {
      cohortSize: 4,
      overSelection: 0,
      roundTimeout: 10,
      minUpdates: 1,
      serverOptimizer: { kind: 'sgd', lr: 1 },
      privacy: privacy({ clipNorm: 1e9, noiseMultiplier: 0 }),
    },
    init,
  );
  for (let c = 0; c < 4; c++) sync.assign(c, 0);
  const a = randomVector(d, 70);
  const b = randomVector(d, 71);
  sync.onUpdate({ clientId: 0, baseVersion: 0, delta: a, numExamples: 3 }, 1);
  sync.onUpdate({ clientId: 1, baseVersion: 0, delta: b, numExamples: 50 }, 2);
  const timer = sync.onTimer(10);
  assert.equal(timer.stepped, true);
  for (let j = 0; j < d; j++) {
    // Example counts (3 vs 50) play no part, and the divisor is the cohort size 4.
    const expected = -((a[j] as number) + (b[j] as number)) / 4;
    assert.ok(Math.abs((sync.params[j] as number) - expected) < 1e-6, `param ${j}`);
  }
});
