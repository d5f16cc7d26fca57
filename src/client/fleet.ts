/**
 * A simulated fleet (Node only): N devices, each a real OrchardClient talking to a real server
 * over the network, holding client k's data of the task's federated dataset (src/data) and taking
 * as long to train as the simulator's timing model says (src/sim/timing.ts: per-trip duration
 * distribution × a fixed per-device speed factor, scaled from virtual seconds to real milliseconds),
 * with the simulator's dropout model (a device vanishes at a uniform point of its trip and never
 * uploads; the server only learns of it when the assignment lapses).
 *
 * `concurrency` devices run trips at once; each trip picks an idle device uniformly at random (as
 * the simulator does), unless every device runs at once, when each worker owns one device.
 */

import { setMaxListeners } from 'node:events';
import { Rng } from '../core/rng.ts';
import { createDataset } from '../data/index.ts';
import type { DatasetSpec } from '../data/spec.ts';
import type { FederatedDataset } from '../data/types.ts';
import type { DurationSpec } from '../sim/spec.ts';
import { TripTiming } from '../sim/timing.ts';
import {
  type Assignment,
  isExpiredAssignment,
  OrchardClient,
  type PendingUpload,
  type RequestEvent,
  type TripOutcome,
} from './client.ts';
import { OrchardClientError } from './errors.ts';
import { LatencyHistogram } from './histogram.ts';
import { nodeHttpFetch, nodePlatform } from './platform/node.ts';
import { type FetchLike, MemoryStore, timerSleep } from './platform.ts';
import type { RetryPolicy } from './retry.ts';
import { localTrainer, TrainerContext } from './trainer.ts';

export interface FleetTiming {
  /** On-device training time per trip, in virtual seconds (the simulator's DurationSpec). */
  readonly duration: DurationSpec;
  /** Device speed heterogeneity: each device's times × exp(N(0, speedSigma²)), fixed per device. */
  readonly speedSigma: number;
  /** Probability that a device that got an assignment vanishes before uploading. */
  readonly dropoutProbability: number;
  /** Real milliseconds per virtual second (0: no simulated training time). */
  readonly msPerSecond: number;
}

export const DEFAULT_FLEET_TIMING: FleetTiming = {
  duration: { kind: 'half_normal', sigma: 1, offset: 0 },
  speedSigma: 0,
  dropoutProbability: 0,
  msPerSecond: 100,
};

export interface FleetOptions {
  readonly server: string;
  readonly enrollmentKey: string;
  /** Devices in the fleet. Device k holds client (k mod numClients) of the dataset. */
  readonly clients: number;
  /** Devices running trips at once (default: all of them). */
  readonly concurrency?: number;
  /** Stop after this many seconds … */
  readonly durationSeconds?: number;
  /** … or once this many uploads were accepted (whichever comes first). */
  readonly updates?: number;
  readonly timing?: Partial<FleetTiming>;
  /** Seeds device selection, timing, dropouts and local training. */
  readonly seed?: number;
  /** Devices' data; default: the dataset (and seed) named in the task's training plan. */
  readonly dataset?: { readonly spec: DatasetSpec; readonly seed: number };
  readonly retry?: Partial<RetryPolicy>;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: FleetProgress) => void;
  readonly progressEveryMs?: number;
  /** Default: nodeHttpFetch with a pool of min(concurrency, 512) connections. */
  readonly fetch?: FetchLike;
  readonly attributes?: Readonly<Record<string, string | number | boolean>>;
  /** Workers start spread evenly over this many ms (default 100 when more than 100 run at once). */
  readonly rampMs?: number;
  /**
   * Register every device before the clock starts (this many registrations at a time), so a load
   * run measures steady-state trips rather than the one-off enrolment. Default: register lazily.
   */
  readonly registerFirst?: number;
  readonly onRegistered?: (devices: number, seconds: number) => void;
}

export interface FleetProgress {
  readonly elapsedSeconds: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly waits: number;
  readonly dropouts: number;
  readonly errors: number;
  /** Accepted uploads per second over the last progress interval. */
  readonly recentUpdatesPerSecond: number;
  /** Newest model version a response reported. */
  readonly version: number;
  /** Devices inside a trip right now. */
  readonly busy: number;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly max: number;
}

export interface FleetSummary {
  readonly clients: number;
  readonly concurrency: number;
  readonly elapsedSeconds: number;
  readonly accepted: number;
  /** Accepted uploads that were replays of an already-applied key (answer lost, then resent). */
  readonly duplicates: number;
  readonly rejected: Readonly<Record<string, number>>;
  readonly rejectedTotal: number;
  readonly waits: number;
  /** Assignments whose model version was no longer served when the device fetched it. */
  readonly expired: number;
  readonly dropouts: number;
  /** Trips that failed without a server verdict, by client error code. */
  readonly errors: Readonly<Record<string, number>>;
  readonly updatesPerSecond: number;
  readonly meanStaleness: number;
  readonly lastVersion: number;
  /** Milliseconds, per request kind (successful answers) and per whole trip (check-in → answer). */
  readonly latency: Readonly<Record<'checkin' | 'model' | 'update' | 'trip', LatencySummary>>;
  /** 'finished': the server said every task finished for good (e.g. its privacy budget is spent). */
  readonly stopReason: 'updates' | 'duration' | 'aborted' | 'finished';
}

// Independent random streams, as in the simulator, so changing one knob leaves the others alone.
const FLEET_STREAM = 0xf1ee7;
const SELECT_STREAM = 1;
const DURATION_STREAM = 2;
const DROPOUT_STREAM = 3;
const TRAIN_STREAM = 5;

function summarize(h: LatencyHistogram): LatencySummary {
  return { count: h.count, p50: h.quantile(0.5), p99: h.quantile(0.99), mean: h.mean(), max: h.max };
}

function checkOptions(o: FleetOptions): void {
  const bad: string[] = [];
  if (!(Number.isInteger(o.clients) && o.clients > 0))
    bad.push(`clients must be a positive integer, got ${o.clients}`);
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency > 0))
    bad.push(`concurrency must be a positive integer, got ${o.concurrency}`);
  if (o.durationSeconds !== undefined && !(o.durationSeconds > 0))
    bad.push(`durationSeconds must be > 0, got ${o.durationSeconds}`);
  if (o.updates !== undefined && !(Number.isInteger(o.updates) && o.updates > 0))
    bad.push(`updates must be a positive integer, got ${o.updates}`);
  if (o.durationSeconds === undefined && o.updates === undefined && o.signal === undefined)
    bad.push('set durationSeconds, updates or a signal, or the fleet never stops');
  const t = o.timing ?? {};
  if (t.dropoutProbability !== undefined && !(t.dropoutProbability >= 0 && t.dropoutProbability <= 1))
    bad.push(`dropoutProbability must be in [0, 1], got ${t.dropoutProbability}`);
  if (t.msPerSecond !== undefined && !(t.msPerSecond >= 0 && Number.isFinite(t.msPerSecond)))
    bad.push(`msPerSecond must be ≥ 0, got ${t.msPerSecond}`);
  if (t.speedSigma !== undefined && !(t.speedSigma >= 0))
    bad.push(`speedSigma must be ≥ 0, got ${t.speedSigma}`);
  if (o.rampMs !== undefined && !(o.rampMs >= 0)) bad.push(`rampMs must be ≥ 0, got ${o.rampMs}`);
  if (bad.length > 0) throw new OrchardClientError('invalid_argument', `fleet: ${bad.join('; ')}`);
}

/** Runs the fleet until a stop condition; resolves with what happened. */
export async function runFleet(options: FleetOptions): Promise<FleetSummary> {
  checkOptions(options);
  const n = options.clients;
  const concurrency = Math.min(options.concurrency ?? n, n);
  const timingSpec: FleetTiming = { ...DEFAULT_FLEET_TIMING, ...options.timing };
  const seed = options.seed ?? 1;
  const selectRng = Rng.derive(seed, FLEET_STREAM, SELECT_STREAM);
  const durationRng = Rng.derive(seed, FLEET_STREAM, DURATION_STREAM);
  const dropoutRng = Rng.derive(seed, FLEET_STREAM, DROPOUT_STREAM);
  const fetchImpl = options.fetch ?? nodeHttpFetch({ maxSockets: Math.min(concurrency, 512) });
  // One controller per worker, aborted together on stop: thousands of listeners on one shared
  // signal would make every add/remove a linear scan (EventTarget checks for duplicates).
  const stop = new AbortController();
  const controllers = new Set<AbortController>();
  const workerSignal = (): { signal: AbortSignal; done: () => void } => {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    if (stop.signal.aborted) ac.abort(stop.signal.reason);
    controllers.add(ac);
    return { signal: ac.signal, done: () => controllers.delete(ac) };
  };
  const onOuterAbort = () => halt('aborted');
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const histograms = {
    checkin: new LatencyHistogram(),
    model: new LatencyHistogram(),
    update: new LatencyHistogram(),
    trip: new LatencyHistogram(),
  };
  const onRequest = (e: RequestEvent) => {
    if (e.route !== 'register' && e.status >= 200 && e.status < 300) histograms[e.route].record(e.ms);
  };
  const counts = {
    accepted: 0,
    duplicates: 0,
    waits: 0,
    expired: 0,
    dropouts: 0,
    errorsTotal: 0,
    rejectedTotal: 0,
  };
  const rejected: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let stalenessSum = 0;
  let lastVersion = 0;
  let busy = 0;
  let stopReason: FleetSummary['stopReason'] | null = null;

  // Data: loaded once, from the first assignment's plan unless given.
  let dataset: Promise<{ data: FederatedDataset; numClasses: number }> | null = null;
  const loadData = (assignment: Assignment) => {
    dataset ??= Promise.resolve().then(() => {
      const plan = assignment.plan as {
        dataset?: DatasetSpec;
        seed?: number;
        modelInput?: { numClasses?: number };
      };
      const spec = options.dataset?.spec ?? plan.dataset;
      const dataSeed = options.dataset?.seed ?? plan.seed;
      if (spec === undefined || dataSeed === undefined)
        throw new OrchardClientError(
          'invalid_argument',
          'the task names no dataset for simulated devices; pass one (FleetOptions.dataset)',
        );
      const data = createDataset(spec, dataSeed);
      return { data, numClasses: plan.modelInput?.numClasses ?? data.numClasses };
    });
    return dataset;
  };
  const context = new TrainerContext();
  const tripsOf = new Int32Array(n);
  let timing: TripTiming | null = null;

  const clients: (OrchardClient | undefined)[] = new Array(n);
  const clientFor = (k: number): OrchardClient => {
    let c = clients[k];
    if (c === undefined) {
      c = new OrchardClient({
        server: options.server,
        enrollmentKey: options.enrollmentKey,
        platform: { ...nodePlatform({ storage: new MemoryStore() }), fetch: fetchImpl },
        retry: options.retry ?? {},
        onRequest,
        ...(options.attributes ? { attributes: options.attributes } : {}),
        trainer: async (job) => {
          const { data, numClasses } = await (dataset as NonNullable<typeof dataset>);
          const examples = data.client(k % data.numClients);
          const trip = tripsOf[k] as number;
          tripsOf[k] = trip + 1;
          return localTrainer(examples, {
            numClasses,
            seed: 0,
            context,
            rngForTrip: () => Rng.derive(seed, FLEET_STREAM, TRAIN_STREAM, k, trip),
          })(job);
        },
      });
      clients[k] = c;
    }
    return c;
  };

  const countError = (e: unknown) => {
    if (!(e instanceof OrchardClientError)) throw e;
    counts.errorsTotal++;
    errors[e.code] = (errors[e.code] ?? 0) + 1;
  };
  const record = (outcome: TripOutcome) => {
    if (outcome.kind === 'accepted') {
      counts.accepted++;
      if (outcome.response.duplicate) counts.duplicates++;
      stalenessSum += outcome.response.staleness;
      lastVersion = Math.max(lastVersion, outcome.response.version);
      if (options.updates !== undefined && counts.accepted >= options.updates) halt('updates');
    } else if (outcome.kind === 'rejected') {
      counts.rejectedTotal++;
      rejected[outcome.error.code] = (rejected[outcome.error.code] ?? 0) + 1;
    }
  };
  const halt = (reason: NonNullable<typeof stopReason>) => {
    stopReason ??= reason;
    if (stop.signal.aborted) return;
    stop.abort(new Error(`fleet stopped: ${reason}`));
    for (const ac of controllers) ac.abort(stop.signal.reason);
  };
  if (options.signal?.aborted) halt('aborted');
  /** Resolves true after ms, false as soon as the signal aborts. */
  const sleep = (ms: number, signal: AbortSignal): Promise<boolean> =>
    timerSleep(ms, signal).then(
      () => true,
      () => false,
    );

  /** One trip of device k; returns how long the worker should pause before the next one. */
  const trip = async (k: number, signal: AbortSignal): Promise<number> => {
    const client = clientFor(k);
    const started = performance.now();
    try {
      const pending = await client.pendingUpload();
      if (pending !== null) {
        record(await client.submit(pending, signal, true));
        return 0;
      }
      const answer = await client.checkin(signal);
      if (answer.action === 'wait') {
        counts.waits++;
        if (answer.allFinished === true) {
          halt('finished');
          return 0;
        }
        // "No sooner than": come back within 1–1.5× the hint, so turned-away devices spread out.
        return answer.retryAfterMs * (1 + 0.5 * selectRng.next());
      }
      const { data } = await loadData(answer);
      timing ??= new TripTiming(
        {
          duration: timingSpec.duration,
          speedSigma: timingSpec.speedSigma,
          uploadBandwidth: 0,
          downloadBandwidth: 0,
          seed,
        },
        1,
      );
      const examples = data.clientSize(k % data.numClients);
      const simulatedMs = timing.tripSeconds(durationRng, k, examples) * timingSpec.msPerSecond;
      const dropAt = dropoutRng.next() < timingSpec.dropoutProbability ? dropoutRng.next() : null;
      if (dropAt !== null) {
        // Gone mid-trip: nothing is uploaded and the assignment lapses on the server.
        counts.dropouts++;
        await sleep(dropAt * simulatedMs, signal);
        await client.abandon();
        return 0;
      }
      let prepared: PendingUpload;
      try {
        prepared = await client.prepare(answer, signal);
      } catch (e) {
        if (!isExpiredAssignment(e)) throw e;
        // The server moved past the assigned version before this device fetched it.
        counts.expired++;
        await client.abandon();
        return 0;
      }
      if (!(await sleep(simulatedMs, signal))) return 0;
      record(await client.submit(prepared, signal));
      histograms.trip.record(performance.now() - started);
      return 0;
    } catch (e) {
      if (signal.aborted) return 0;
      countError(e);
      // Back off a little so a dead server is not hammered by every worker at once.
      return 200 + 300 * selectRng.next();
    }
  };

  const idle: number[] = [];
  const pick = (): number => {
    // Uniform over idle devices: swap-remove from the idle list.
    const i = selectRng.int(idle.length);
    const k = idle[i] as number;
    idle[i] = idle[idle.length - 1] as number;
    idle.pop();
    return k;
  };
  const bound = concurrency === n;
  if (!bound) for (let k = 0; k < n; k++) idle.push(k);

  const worker = async (w: number, signal: AbortSignal) => {
    while (!signal.aborted) {
      const k = bound ? w : pick();
      busy++;
      let pause: number;
      try {
        pause = await trip(k, signal);
      } finally {
        busy--;
        if (!bound) idle.push(k);
      }
      if (pause > 0 && !(await sleep(pause, signal))) break;
    }
  };

  if (options.registerFirst !== undefined) {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(options.registerFirst, n)) }, async () => {
        const { signal, done } = workerSignal();
        while (next < n && !signal.aborted) {
          const k = next++;
          try {
            await clientFor(k).register(signal);
          } catch (e) {
            if (!signal.aborted) countError(e);
          }
        }
        done();
      }),
    );
    options.onRegistered?.(n, (performance.now() - t0) / 1000);
  }

  const startedAt = performance.now();
  let lastAccepted = 0;
  let lastTick = startedAt;
  const progressTimer = setInterval(() => {
    const now = performance.now();
    options.onProgress?.({
      elapsedSeconds: (now - startedAt) / 1000,
      accepted: counts.accepted,
      rejected: counts.rejectedTotal,
      waits: counts.waits,
      dropouts: counts.dropouts,
      errors: counts.errorsTotal,
      recentUpdatesPerSecond: ((counts.accepted - lastAccepted) * 1000) / Math.max(1, now - lastTick),
      version: lastVersion,
      busy,
    });
    lastAccepted = counts.accepted;
    lastTick = now;
  }, options.progressEveryMs ?? 1000);
  const deadline =
    options.durationSeconds === undefined
      ? null
      : setTimeout(() => halt('duration'), options.durationSeconds * 1000);
  try {
    // Workers start spread over a ramp so a large fleet does not register in one burst.
    const ramp = options.rampMs ?? (concurrency > 100 ? 100 : 0);
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        const { signal, done } = workerSignal();
        try {
          if (ramp > 0 && !(await sleep((w / concurrency) * ramp, signal))) return;
          await worker(w, signal);
        } finally {
          done();
        }
      }),
    );
  } finally {
    clearInterval(progressTimer);
    if (deadline !== null) clearTimeout(deadline);
    options.signal?.removeEventListener('abort', onOuterAbort);
    if ('agent' in fetchImpl) (fetchImpl as { agent: { destroy(): void } }).agent.destroy();
  }
  const elapsedSeconds = (performance.now() - startedAt) / 1000;
  return {
    clients: n,
    concurrency,
    elapsedSeconds,
    accepted: counts.accepted,
    duplicates: counts.duplicates,
    rejected,
    rejectedTotal: counts.rejectedTotal,
    waits: counts.waits,
    expired: counts.expired,
    dropouts: counts.dropouts,
    errors,
    updatesPerSecond: counts.accepted / Math.max(elapsedSeconds, 1e-9),
    meanStaleness: counts.accepted === 0 ? 0 : stalenessSum / counts.accepted,
    lastVersion,
    latency: {
      checkin: summarize(histograms.checkin),
      model: summarize(histograms.model),
      update: summarize(histograms.update),
      trip: summarize(histograms.trip),
    },
    stopReason: stopReason ?? 'aborted',
  };
}
