/**
 * Runs an experiment: the dataset is built once and shared; every run (and repeat) gets the same
 * initial parameters for a given seed so methods differ only in how they aggregate. Optional tuning
 * tries every learning-rate candidate for the same budget, keeps the best by the configured metric,
 * then does the full run with it.
 */
import { arch, cpus, platform } from 'node:os';
import { ConfigError, OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { createDataset } from '../data/index.ts';
import type { FederatedDataset } from '../data/types.ts';
import { createStrategy } from '../fl/index.ts';
import type { LocalTrainSpec, StrategySpec } from '../fl/spec.ts';
import { createModel } from '../nn/index.ts';
import type { Model } from '../nn/model.ts';
import { simulate } from '../sim/simulate.ts';
import type { SimSpec } from '../sim/spec.ts';
import type { RunSummary } from '../sim/types.ts';
import { compareRuns } from './compare.ts';
import { type ExperimentConfig, type ResolvedRun, resolveRun, type TuningSpec, targetOf } from './config.ts';
import type {
  Environment,
  ExperimentResult,
  RunInfo,
  RunOptions,
  RunSettings,
  SimProgress,
  TuningCandidate,
  TuningResult,
} from './types.ts';

/** The strategy with its server step size replaced: optimizer lr, or FedAsync's mixing rate. */
export function withServerLr(strategy: StrategySpec, lr: number): StrategySpec {
  if (strategy.kind === 'fedasync') return { ...strategy, alpha: lr };
  return { ...strategy, serverOptimizer: { ...strategy.serverOptimizer, lr } };
}

/** A DP strategy's sampling population defaults to the dataset's client count. */
export function withPopulation(strategy: StrategySpec, numClients: number): StrategySpec {
  if (strategy.kind === 'fedasync' || strategy.privacy === undefined) return strategy;
  const population = strategy.privacy.population;
  if (population === undefined)
    return { ...strategy, privacy: { ...strategy.privacy, population: numClients } };
  // A population larger than the clients the simulator draws from would understate q, hence ε.
  if (population > numClients)
    throw new ConfigError(
      [
        {
          path: 'strategy.privacy.population',
          message: `${population} exceeds the dataset's ${numClients} clients: the sampling rate and ε would be understated`,
        },
      ],
      'privacy config',
    );
  return strategy;
}

/** The strategy's own server step size. */
export function serverLrOf(strategy: StrategySpec): number {
  return strategy.kind === 'fedasync' ? strategy.alpha : strategy.serverOptimizer.lr;
}

function limitsOf(sim: SimSpec): RunInfo['limits'] {
  const limits: { maxTrips?: number; maxTime?: number; maxVersions?: number } = {};
  if (sim.maxTrips !== undefined) limits.maxTrips = sim.maxTrips;
  if (sim.maxTime !== undefined) limits.maxTime = sim.maxTime;
  if (sim.maxVersions !== undefined) limits.maxVersions = sim.maxVersions;
  return limits;
}

/** How far a simulation is toward its nearest stop condition, in [0, 1]. */
export function progressFraction(limits: RunInfo['limits'], p: SimProgress): number {
  let f = 0;
  if (limits.maxTrips !== undefined) f = Math.max(f, p.trips / limits.maxTrips);
  if (limits.maxTime !== undefined) f = Math.max(f, p.time / limits.maxTime);
  if (limits.maxVersions !== undefined) f = Math.max(f, p.version / limits.maxVersions);
  return Math.min(1, f);
}

function environment(): Environment {
  const list = cpus();
  return {
    node: process.version,
    platform: platform(),
    arch: arch(),
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
  };
}

/** A summary for a run the simulator could not finish because the model blew up. */
function divergedSummary(label: string, strategy: string, seed: number, message: string): RunSummary {
  return {
    label,
    strategy,
    seed,
    stopReason: 'diverged',
    stopMessage: message,
    curve: [],
    finalAccuracy: Number.NaN,
    finalLoss: Number.NaN,
    counts: { started: 0, completed: 0, accepted: 0, droppedOut: 0, abandoned: 0, rejected: {} },
    stalenessHistogram: [],
    virtualSeconds: 0,
    wallSeconds: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
}

function isDivergence(e: unknown): e is OrchardError {
  return e instanceof OrchardError && (e.code === 'DIVERGED' || e.code === 'NON_FINITE');
}

interface Shared {
  readonly dataset: FederatedDataset;
  readonly model: Model;
  readonly options: RunOptions;
}

function simulateOnce(
  shared: Shared,
  info: RunInfo,
  strategySpec: StrategySpec,
  local: LocalTrainSpec,
  sim: SimSpec,
): RunSummary {
  const { dataset, model, options } = shared;
  // Same initial parameters for every method under one seed: only aggregation differs.
  const initial = model.init(Rng.derive(info.seed, 0x1917));
  const strategy = createStrategy(withPopulation(strategySpec, dataset.numClients), initial);
  options.onRunStart?.(info);
  const start = performance.now();
  let summary: RunSummary;
  try {
    summary = simulate({
      dataset,
      model,
      strategy,
      local,
      sim,
      label: info.label,
      onProgress: (p: SimProgress) => options.onProgress?.(info, p, progressFraction(info.limits, p)),
    });
  } catch (e) {
    if (!isDivergence(e)) throw e;
    summary = {
      ...divergedSummary(info.label, strategySpec.kind, info.seed, e.message),
      wallSeconds: (performance.now() - start) / 1000,
    };
  }
  options.onRunEnd?.(info, summary);
  return summary;
}

function candidatesOf(run: ResolvedRun): Array<{ clientLr: number; serverLr: number }> {
  const grid = run.grid ?? {};
  const clientLrs = grid.clientLr ?? [run.local.lr];
  const serverLrs = grid.serverLr ?? [serverLrOf(run.strategy)];
  const out: Array<{ clientLr: number; serverLr: number }> = [];
  for (const clientLr of clientLrs) for (const serverLr of serverLrs) out.push({ clientLr, serverLr });
  return out;
}

function tuningSim(sim: SimSpec, tuning: TuningSpec, seed: number): SimSpec {
  // The budget is the only stop condition while tuning, so every candidate gets exactly the same.
  const { maxTrips: _t, maxTime: _s, maxVersions: _v, targetAccuracy: _a, ...rest } = sim;
  const out: SimSpec = { ...rest, seed };
  if (tuning.budget.maxTrips !== undefined) out.maxTrips = tuning.budget.maxTrips;
  if (tuning.budget.maxTime !== undefined) out.maxTime = tuning.budget.maxTime;
  return out;
}

function score(summary: RunSummary, metric: TuningSpec['metric']): number | null {
  if (summary.stopReason === 'diverged') return null;
  const value =
    metric === 'final_accuracy'
      ? summary.finalAccuracy
      : summary.curve.reduce((best, p) => Math.max(best, p.accuracy), Number.NEGATIVE_INFINITY);
  return Number.isFinite(value) ? value : null;
}

export { type Comparison, compareRuns, reachedTarget, type ToTarget } from './compare.ts';
export type * from './types.ts';

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function runExperiment(
  config: ExperimentConfig,
  options: RunOptions = {},
): Promise<ExperimentResult> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const log = options.log ?? (() => {});
  const target = targetOf(config) ?? null;

  log(`building dataset ${config.dataset.kind}`);
  const dataset = createDataset(config.dataset, config.seed);
  const model = createModel(config.model, {
    inputKind: dataset.inputKind,
    inputDim: dataset.inputDim,
    numClasses: dataset.numClasses,
  });
  log(
    `dataset ${dataset.name}: ${dataset.numClients} clients; model ${model.name}: ${model.numParams} params`,
  );
  const shared: Shared = { dataset, model, options };

  const resolved = config.runs.map((_, i) => resolveRun(config, i));
  const tuning = config.tuning;
  const tuneSteps =
    tuning === undefined
      ? 0
      : resolved.reduce((n, r) => n + (r.grid === null ? 0 : candidatesOf(r).length), 0);
  const steps = tuneSteps + resolved.length * config.seeds;
  let step = 0;

  // Tuning first (always with the first seed), so every full run uses its chosen learning rates.
  const tuningResults: TuningResult[] = [];
  const chosen = new Map<number, { strategy: StrategySpec; local: LocalTrainSpec }>();
  for (const run of resolved) {
    if (tuning === undefined || run.grid === null) continue;
    const sim = tuningSim(run.sim, tuning, config.seed);
    const candidates: TuningCandidate[] = [];
    let best: { clientLr: number; serverLr: number; score: number } | null = null;
    for (const c of candidatesOf(run)) {
      await yieldToEventLoop();
      const info: RunInfo = {
        label: run.label,
        seed: config.seed,
        phase: 'tune',
        candidate: `client lr ${c.clientLr}, server lr ${c.serverLr}`,
        step: step++,
        steps,
        limits: limitsOf(sim),
      };
      const summary = simulateOnce(
        shared,
        info,
        withServerLr(run.strategy, c.serverLr),
        { ...run.local, lr: c.clientLr },
        sim,
      );
      const s = score(summary, tuning.metric);
      candidates.push({ ...c, score: s, stopReason: summary.stopReason, wallSeconds: summary.wallSeconds });
      // Ties keep the earlier candidate, so the grid order decides and the result is deterministic.
      if (s !== null && (best === null || s > best.score)) best = { ...c, score: s };
    }
    tuningResults.push({
      label: run.label,
      metric: tuning.metric,
      budget: tuning.budget,
      candidates,
      best: best === null ? null : { clientLr: best.clientLr, serverLr: best.serverLr },
    });
    if (best !== null) {
      chosen.set(run.index, {
        strategy: withServerLr(run.strategy, best.serverLr),
        local: { ...run.local, lr: best.clientLr },
      });
      log(`${run.label}: tuned client lr ${best.clientLr}, server lr ${best.serverLr}`);
    } else log(`${run.label}: every tuning candidate diverged; using the configured learning rates`);
  }

  const runs: RunSummary[] = [];
  const settings: RunSettings[] = [];
  for (let r = 0; r < config.seeds; r++) {
    const seed = config.seed + r;
    for (const run of resolved) {
      await yieldToEventLoop();
      const pick = chosen.get(run.index) ?? { strategy: run.strategy, local: run.local };
      const sim: SimSpec = { ...run.sim, seed };
      if (target !== null && config.stopAtTarget) sim.targetAccuracy = target;
      const info: RunInfo = {
        label: run.label,
        seed,
        phase: 'run',
        step: step++,
        steps,
        limits: limitsOf(sim),
      };
      runs.push(simulateOnce(shared, info, pick.strategy, pick.local, sim));
      settings.push({ label: run.label, seed, strategy: pick.strategy, local: pick.local });
    }
  }

  return {
    config,
    target,
    runs,
    settings,
    tuning: tuningResults,
    comparisons: compareRuns(runs, target),
    startedAt,
    wallSeconds: (performance.now() - t0) / 1000,
    environment: environment(),
  };
}
