/**
 * Shared parts of the end-to-end accuracy tests (FedBuff in src/client/e2e.test.ts, sync rounds in
 * src/server/sync-e2e.test.ts): the simulator's figure for a task over several seeds, the served
 * figure polled from /v1/metrics, and the compared statistic (mean accuracy of the last evaluations).
 */
import assert from 'node:assert/strict';
import { createDataset } from '../data/index.ts';
import { parseTaskSpec } from '../server/index.ts';
import type { MetricsResponse } from '../server/protocol.ts';
import { taskRuntime } from '../server/task.ts';
import { simulate } from '../sim/simulate.ts';

export interface AccuracyPoint {
  readonly version: number;
  readonly accuracy: number;
}

/** Half-normal training times (σ = 1 s), the timing both e2e tests give the simulator and the fleet. */
export const E2E_DURATION = { kind: 'half_normal', sigma: 1, offset: 0 } as const;

/** Mean accuracy of the `last` evaluations up to `finalVersion` (one every `evalEvery` versions). */
export function tailMean(
  points: readonly AccuracyPoint[],
  finalVersion: number,
  last: number,
  evalEvery: number,
): number {
  const tail = points.filter((p) => p.version > finalVersion - last * evalEvery && p.version <= finalVersion);
  assert.equal(tail.length, last, `expected ${last} evaluations, got versions ${tail.map((p) => p.version)}`);
  return tail.reduce((s, p) => s + p.accuracy, 0) / tail.length;
}

export interface SimulatedTail {
  /** The tail mean of each seed's run. */
  readonly perSeed: readonly number[];
  readonly mean: number;
}

/**
 * Runs the simulator on `task` (the same input the server is started with) once per seed with
 * saturated arrivals, no dropouts, no bandwidth limits and `maxTrips` trips, and returns each
 * run's tail mean (see {@link tailMean}) and their mean.
 */
export function simulatedTail(
  task: unknown,
  options: {
    readonly concurrency: number;
    readonly maxTrips: number;
    readonly finalVersion: number;
    readonly last: number;
    readonly seeds: readonly number[];
  },
): SimulatedTail {
  const spec = parseTaskSpec(task);
  if (spec.dataset === undefined) throw new Error('the e2e task needs a dataset');
  const evalEvery = spec.evalEvery;
  const dataset = createDataset(spec.dataset, spec.seed);
  const perSeed = options.seeds.map((seed) => {
    const runtime = taskRuntime(spec);
    const run = simulate({
      dataset,
      model: runtime.model,
      strategy: runtime.newStrategy(),
      local: spec.localTrain,
      label: `sim-${seed}`,
      sim: {
        concurrency: options.concurrency,
        arrival: { kind: 'saturate' },
        duration: E2E_DURATION,
        speedSigma: 0,
        dropoutProbability: 0,
        uploadBandwidth: 0,
        downloadBandwidth: 0,
        maxTrips: options.maxTrips,
        evalEvery,
        evalSubset: spec.evalSubset,
        seed,
      },
    });
    const points = run.curve.flatMap((p) =>
      p.accuracy === undefined ? [] : [{ version: p.version, accuracy: p.accuracy }],
    );
    return tailMean(points, options.finalVersion, options.last, evalEvery);
  });
  return { perSeed, mean: perSeed.reduce((a, b) => a + b, 0) / perSeed.length };
}

/**
 * The served task's evaluated accuracies from /v1/metrics. The evaluation of the last version is
 * recorded asynchronously, so this polls until `finalVersion` is there or `deadlineMs` passes
 * (then returns what it has; the caller's tail check reports what is missing).
 */
export async function servedAccuracies(
  url: string,
  taskId: string,
  finalVersion: number,
  deadlineMs = 15_000,
): Promise<AccuracyPoint[]> {
  let served: AccuracyPoint[] = [];
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const res = (await (
      await fetch(`${url}/v1/metrics?taskId=${encodeURIComponent(taskId)}&limit=1000`)
    ).json()) as MetricsResponse;
    served = res.metrics.flatMap((m) =>
      typeof m.values.accuracy === 'number' ? [{ version: m.version, accuracy: m.values.accuracy }] : [],
    );
    if (served.some((p) => p.version === finalVersion)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return served;
}
