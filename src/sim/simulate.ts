/**
 * Discrete-event simulation of federated training on a virtual clock.
 *
 * A trip is one client's round trip: it is picked uniformly from the idle part of the population
 * (a device never trains twice at once), downloads the strategy's current snapshot, trains for a sampled
 * duration and uploads. Local training runs lazily when the upload event fires, from the snapshot the
 * client was assigned, so only in-flight parameter references are held and a run with a million
 * clients costs memory only for the clients in flight.
 *
 * Accounting (documented here because reports rely on it):
 *  - bytesDown grows by 4·numParams when a trip starts (every trip downloads the model, including ones
 *    that later drop out or are abandoned); bytesUp grows by 4·numParams when an update reaches the
 *    server. Dropped and abandoned trips never upload.
 *  - `completed` counts updates that reached the server (accepted + rejected); CurvePoint.trips is it.
 *  - A dropped-out client fails at a uniform point of its trip; the strategy hears of it through
 *    onDropout at that moment. Abandoned trips (stragglers the strategy no longer wants) are cancelled
 *    on the spot and reported through onDropout (the contract's "cancellation"), but counted as
 *    `abandoned`, not `droppedOut`; their pending events are ignored (per-slot generation check).
 *  - Check-ins that find no free slot or no demand leave and are counted in `turnedAway`.
 *  - Ties in virtual time: queued trip events first (in scheduling order), then the strategy's
 *    deadline, then a check-in.
 */
import { ConfigError, OrchardError, ShapeError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { allFinite } from '../core/vec.ts';
import type { Examples, FederatedDataset } from '../data/types.ts';
import { TrainScratch, trainLocal } from '../fl/client.ts';
import type { LocalTrainSpec } from '../fl/spec.ts';
import { isPrivate, type PrivacyReport } from '../fl/strategies/dp.ts';
import type { Strategy } from '../fl/types.ts';
import { evaluate, takeRows } from '../nn/index.ts';
import type { Model } from '../nn/model.ts';
import { EventQueue } from './queue.ts';
import { type SimSpec, SimSpecSchema } from './spec.ts';
import { modelBytes, TripTiming } from './timing.ts';
import type { CurvePoint, PrivacySummary, RunSummary, StopReason } from './types.ts';

export interface SimProgress {
  readonly time: number;
  readonly trips: number;
  readonly version: number;
  /** Accuracy of the latest evaluation, when there has been one. */
  readonly accuracy?: number;
}

export interface SimulateOptions {
  readonly dataset: FederatedDataset;
  readonly model: Model;
  readonly strategy: Strategy;
  readonly local: LocalTrainSpec;
  readonly sim: SimSpec;
  readonly label: string;
  /** Called at most about every 100 ms of wall time. */
  readonly onProgress?: (p: SimProgress) => void;
}

/** Consecutive non-finite client deltas that count as divergence (local training has blown up). */
export const NON_FINITE_STORM = 20;
/** Staleness histogram bins; the last one collects staleness ≥ STALENESS_BINS − 1. */
export const STALENESS_BINS = 1000;
const PROGRESS_INTERVAL_MS = 100;

// Independent random streams under Rng.derive(seed, SIM_STREAM, ·): changing e.g. the dropout rate
// leaves client selection and training randomness untouched.
const SIM_STREAM = 0x51d;
const SELECT_STREAM = 1;
const DURATION_STREAM = 2;
const DROPOUT_STREAM = 3;
const ARRIVAL_STREAM = 4;
const TRAIN_STREAM = 5;
const EVAL_STREAM = 6;

const EV_COMPLETE = 0;
const EV_DROPOUT = 1;
const EMPTY = new Float32Array(0);

function validate(opts: SimulateOptions): SimSpec {
  const parsed = SimSpecSchema.safeParse(opts.sim);
  if (!parsed.success)
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ path: ['sim', ...i.path].join('.'), message: i.message })),
      'simulator config',
    );
  const sim = parsed.data;
  if (
    sim.maxTime === undefined &&
    sim.maxTrips === undefined &&
    sim.maxVersions === undefined &&
    sim.targetAccuracy === undefined
  )
    throw new ConfigError(
      [
        {
          path: 'sim',
          message: 'set at least one stop condition: maxTime, maxTrips, maxVersions or targetAccuracy',
        },
      ],
      'simulator config',
    );
  const { model, dataset, strategy } = opts;
  if (strategy.params.length !== model.numParams)
    throw new ShapeError(
      `strategy holds ${strategy.params.length} parameters, model ${model.name} has ${model.numParams}`,
    );
  if (dataset.inputKind !== model.inputKind || dataset.inputDim !== model.inputDim)
    throw new ShapeError(
      `dataset ${dataset.name} gives ${dataset.inputKind} inputs of size ${dataset.inputDim}, model ${model.name} takes ${model.inputKind} inputs of size ${model.inputDim}`,
    );
  if (dataset.numClients < 1) throw new ShapeError(`dataset ${dataset.name} has no clients`);
  return sim;
}

/** The fixed evaluation set: the whole test set, or a seeded random subset of `evalSubset` rows. */
function evaluationSet(test: Examples, subset: number | undefined, seed: number): Examples {
  if (subset === undefined || subset >= test.n) return test;
  // A random subset rather than the first rows: test sets may be ordered (e.g. grouped by client).
  const picked = Rng.derive(seed, SIM_STREAM, EVAL_STREAM).permutation(test.n).subarray(0, subset).sort();
  return takeRows(test, picked, 0, subset);
}

export function simulate(opts: SimulateOptions): RunSummary {
  const sim = validate(opts);
  const { dataset, model, strategy, local, label, onProgress } = opts;
  const wallStart = performance.now();
  const seed = sim.seed;
  const numClients = dataset.numClients;
  const cap = Math.min(sim.concurrency, numClients);
  const bytesPerModel = modelBytes(model.numParams);
  const timing = new TripTiming(sim, model.numParams);
  const perExample = sim.duration.kind === 'per_example';
  const selectRng = Rng.derive(seed, SIM_STREAM, SELECT_STREAM);
  const durationRng = Rng.derive(seed, SIM_STREAM, DURATION_STREAM);
  const dropoutRng = Rng.derive(seed, SIM_STREAM, DROPOUT_STREAM);
  const arrivalRng = Rng.derive(seed, SIM_STREAM, ARRIVAL_STREAM);
  const trainRng = Rng.derive(seed, SIM_STREAM, TRAIN_STREAM);
  const scratch = new TrainScratch();
  const evalSet = evaluationSet(dataset.testSet(), sim.evalSubset, seed);
  const dropoutProbability = sim.dropoutProbability;
  const evalEvery = sim.evalEvery;
  const maxTrips = sim.maxTrips ?? Number.POSITIVE_INFINITY;
  const maxVersions = sim.maxVersions ?? Number.POSITIVE_INFINITY;
  const maxTime = sim.maxTime ?? Number.POSITIVE_INFINITY;
  const target = sim.targetAccuracy;

  // In-flight trips live in `cap` slots; a slot's generation changes whenever it is freed, so queued
  // events of a cancelled trip no longer match and are skipped.
  const slotClient = new Int32Array(cap);
  const slotGen = new Int32Array(cap);
  const slotVersion = new Float64Array(cap);
  const slotParams: Float32Array[] = new Array<Float32Array>(cap).fill(EMPTY);
  const freeSlots = new Int32Array(cap);
  for (let i = 0; i < cap; i++) freeSlots[i] = cap - 1 - i;
  let freeCount = cap;
  const clientSlot = new Map<number, number>();
  const queue = new EventQueue(Math.max(16, 2 * cap));

  let now = 0;
  let inFlight = 0;
  let started = 0;
  let completed = 0;
  let accepted = 0;
  let droppedOut = 0;
  let abandonedCount = 0;
  let turnedAway = 0;
  let bytesUp = 0;
  let bytesDown = 0;
  let nonFiniteStreak = 0;
  const rejected: Record<string, number> = {};
  const staleness: number[] = [];
  const curve: CurvePoint[] = [];
  let lastEvalVersion = 0;
  let lastAccuracy: number | undefined;
  let toTarget: RunSummary['toTarget'];
  let stopReason = undefined as StopReason | undefined;
  let stopMessage: string | undefined;

  const privacy = isPrivate(strategy) ? strategy : undefined;
  const epsilonNow = (): { epsilon?: number } =>
    privacy === undefined ? {} : { epsilon: privacy.privacySpent().epsilon };

  const pickClient = (): number => {
    // Rejection sampling is cheap while most of the population is idle; the scan is the fallback
    // for populations barely larger than the concurrency.
    for (let tries = 0; tries < 64; tries++) {
      const k = selectRng.int(numClients);
      if (!clientSlot.has(k)) return k;
    }
    const from = selectRng.int(numClients);
    for (let i = 0; i < numClients; i++) {
      const k = (from + i) % numClients;
      if (!clientSlot.has(k)) return k;
    }
    throw new OrchardError('INVALID_STATE', 'no idle client to start');
  };

  const startTrip = (): void => {
    const clientId = pickClient();
    const assignment = strategy.assign(clientId, now);
    const slot = freeSlots[--freeCount] as number;
    slotClient[slot] = clientId;
    slotVersion[slot] = assignment.version;
    slotParams[slot] = assignment.params;
    clientSlot.set(clientId, slot);
    inFlight++;
    started++;
    bytesDown += bytesPerModel;
    // Only per-example durations depend on the client's size; skip the lookup otherwise.
    const examples = perExample ? dataset.clientSize(clientId) : 0;
    const duration = timing.tripSeconds(durationRng, clientId, examples);
    const gen = slotGen[slot] as number;
    if (dropoutProbability > 0 && dropoutRng.next() < dropoutProbability)
      queue.push(now + dropoutRng.next() * duration, EV_DROPOUT, slot, gen);
    else queue.push(now + duration, EV_COMPLETE, slot, gen);
  };

  const freeSlot = (slot: number): void => {
    clientSlot.delete(slotClient[slot] as number);
    slotGen[slot] = ((slotGen[slot] as number) + 1) | 0;
    slotParams[slot] = EMPTY;
    freeSlots[freeCount++] = slot;
    inFlight--;
  };

  const cancel = (abandoned: readonly number[]): void => {
    for (const clientId of abandoned) {
      const slot = clientSlot.get(clientId);
      if (slot === undefined) continue;
      freeSlot(slot);
      abandonedCount++;
      // The Strategy contract reports cancellations through onDropout: it releases the client.
      strategy.onDropout(clientId, now);
    }
  };

  const fill = (): void => {
    if (inFlight >= cap) return;
    const want = Math.min(strategy.demand(now, inFlight, cap), cap - inFlight);
    for (let i = 0; i < want; i++) startTrip();
  };

  /** Evaluates the server model; returns false (and records divergence) when the loss is not finite. */
  const evaluateNow = (): boolean => {
    const version = strategy.version;
    const ev = evaluate(model, strategy.params, evalSet);
    lastEvalVersion = version;
    lastAccuracy = ev.accuracy;
    if (!Number.isFinite(ev.loss)) {
      stopReason = 'diverged';
      stopMessage = `evaluation loss is ${ev.loss} at version ${version} (virtual time ${now.toFixed(3)} s)`;
      return false;
    }
    curve.push({
      time: now,
      trips: completed,
      version,
      bytesUp,
      bytesDown,
      accuracy: ev.accuracy,
      loss: ev.loss,
      inFlight,
      ...epsilonNow(),
    });
    if (target !== undefined && toTarget === undefined && ev.accuracy >= target) {
      toTarget = { time: now, trips: completed, bytesUp, version };
      stopReason ??= 'target_reached';
    }
    return true;
  };

  const afterStep = (): void => {
    const version = strategy.version;
    if (!allFinite(strategy.params)) {
      stopReason = 'diverged';
      stopMessage = `server parameters became non-finite at version ${version} (virtual time ${now.toFixed(3)} s)`;
      return;
    }
    if (version - lastEvalVersion >= evalEvery) evaluateNow();
  };

  const complete = (slot: number): void => {
    const clientId = slotClient[slot] as number;
    const params = slotParams[slot] as Float32Array;
    const baseVersion = slotVersion[slot] as number;
    freeSlot(slot);
    const result = trainLocal(model, params, dataset.client(clientId), local, trainRng, scratch);
    completed++;
    bytesUp += bytesPerModel;
    if (allFinite(result.delta)) nonFiniteStreak = 0;
    else if (++nonFiniteStreak >= NON_FINITE_STORM) {
      stopReason = 'diverged';
      stopMessage = `${nonFiniteStreak} consecutive client updates were non-finite (local training diverged; lower local.lr)`;
    }
    const outcome = strategy.onUpdate(
      { clientId, baseVersion, delta: result.delta, numExamples: result.numExamples, trainLoss: result.loss },
      now,
    );
    if (outcome.kind === 'accepted') {
      accepted++;
      const bin = Math.min(outcome.staleness, STALENESS_BINS - 1);
      while (staleness.length <= bin) staleness.push(0);
      staleness[bin] = (staleness[bin] as number) + 1;
      if (outcome.abandoned.length > 0) cancel(outcome.abandoned);
      if (outcome.stepped) afterStep();
    } else {
      rejected[outcome.reason] = (rejected[outcome.reason] ?? 0) + (outcome.count ?? 1);
    }
  };

  const arrival = sim.arrival;
  const nextArrivalAfter = (t: number): number =>
    arrival.kind === 'constant'
      ? t + 1 / arrival.rate
      : arrival.kind === 'poisson'
        ? t + arrivalRng.exponential(arrival.rate)
        : Number.POSITIVE_INFINITY;
  let nextArrival = nextArrivalAfter(0);
  const saturate = arrival.kind === 'saturate';

  let lastProgress = performance.now();
  let sinceCheck = 0;
  let timerCallsAtSameTime = 0;

  if (evaluateNow() && saturate) fill();
  while (stopReason === undefined) {
    if (completed >= maxTrips) {
      stopReason = 'max_trips';
      break;
    }
    if (strategy.version >= maxVersions) {
      stopReason = 'max_versions';
      break;
    }
    // Every event steps the server at most once, so asking before each one keeps every released
    // step within the budget.
    if (privacy?.wouldExceedBudget()) {
      stopReason = 'privacy_budget';
      const spent = privacy.privacySpent();
      stopMessage = `one more server step would exceed the privacy budget (ε spent ${spent.epsilon.toFixed(3)} at δ = ${spent.delta} after ${spent.steps} steps)`;
      break;
    }
    const tq = queue.peekTime();
    const td = strategy.nextDeadline();
    const t = Math.min(tq, td, nextArrival);
    if (t === Number.POSITIVE_INFINITY)
      throw new OrchardError(
        'INVALID_STATE',
        `simulation stalled at virtual time ${now}: no client in flight, no deadline, and strategy ${strategy.name} demands no clients`,
      );
    if (t > maxTime) {
      now = maxTime;
      stopReason = 'max_time';
      break;
    }
    if (t > now) {
      now = t;
      timerCallsAtSameTime = 0;
    }
    if (tq === t) {
      queue.pop();
      const slot = queue.a;
      if (queue.b === slotGen[slot]) {
        if (queue.kind === EV_COMPLETE) complete(slot);
        else {
          const clientId = slotClient[slot] as number;
          freeSlot(slot);
          droppedOut++;
          strategy.onDropout(clientId, now);
        }
      }
    } else if (td === t) {
      // A strategy whose deadline never moves past `now` would spin here forever.
      if (++timerCallsAtSameTime > 1000)
        throw new OrchardError('INVALID_STATE', `strategy ${strategy.name} keeps its deadline at ${now}`);
      const outcome = strategy.onTimer(now);
      if (outcome.abandoned.length > 0) cancel(outcome.abandoned);
      if (outcome.stepped) afterStep();
    } else {
      nextArrival = nextArrivalAfter(nextArrival);
      if (inFlight < cap && strategy.demand(now, inFlight, cap) > 0) startTrip();
      else turnedAway++;
    }
    if (saturate && stopReason === undefined) fill();
    if (onProgress !== undefined && ++sinceCheck >= 256) {
      sinceCheck = 0;
      const wall = performance.now();
      if (wall - lastProgress >= PROGRESS_INTERVAL_MS) {
        lastProgress = wall;
        onProgress(
          lastAccuracy === undefined
            ? { time: now, trips: completed, version: strategy.version }
            : { time: now, trips: completed, version: strategy.version, accuracy: lastAccuracy },
        );
      }
    }
  }

  // Final evaluation unless the last point already describes the current state.
  const last = curve[curve.length - 1];
  let finalAccuracy = last?.accuracy ?? Number.NaN;
  let finalLoss = last?.loss ?? Number.NaN;
  if (
    last === undefined ||
    last.version !== strategy.version ||
    last.trips !== completed ||
    last.time !== now
  ) {
    const ev = evaluate(model, strategy.params, evalSet);
    finalAccuracy = ev.accuracy;
    finalLoss = ev.loss;
    if (Number.isFinite(ev.loss))
      curve.push({
        time: now,
        trips: completed,
        version: strategy.version,
        bytesUp,
        bytesDown,
        accuracy: ev.accuracy,
        loss: ev.loss,
        inFlight,
        ...epsilonNow(),
      });
    else if (stopReason !== 'diverged') {
      stopReason = 'diverged';
      stopMessage = `evaluation loss is ${ev.loss} at version ${strategy.version} (virtual time ${now.toFixed(3)} s)`;
    }
    if (target !== undefined && toTarget === undefined && Number.isFinite(ev.loss) && ev.accuracy >= target)
      toTarget = { time: now, trips: completed, bytesUp, version: strategy.version };
  }
  onProgress?.({ time: now, trips: completed, version: strategy.version, accuracy: finalAccuracy });

  const summary: RunSummary = {
    label,
    strategy: strategy.name,
    seed,
    stopReason: stopReason as StopReason,
    curve,
    finalAccuracy,
    finalLoss,
    counts: { started, completed, accepted, droppedOut, abandoned: abandonedCount, rejected, turnedAway },
    stalenessHistogram: staleness,
    virtualSeconds: now,
    wallSeconds: (performance.now() - wallStart) / 1000,
    bytesUp,
    bytesDown,
  };
  return {
    ...summary,
    ...(stopMessage !== undefined ? { stopMessage } : {}),
    ...(toTarget !== undefined ? { toTarget } : {}),
    ...(privacy !== undefined ? { privacy: privacySummary(privacy.privacyReport()) } : {}),
  };
}

function privacySummary(report: PrivacyReport): PrivacySummary {
  return {
    epsilon: report.epsilon,
    delta: report.delta,
    noiseMultiplier: report.noiseMultiplier,
    clipNorm: report.clipNorm,
    steps: report.steps,
    accountant: report.accountant,
  };
}
