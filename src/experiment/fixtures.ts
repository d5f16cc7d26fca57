/** Hand-made run summaries for tests of comparisons and reports (no simulator involved). */
import type { CurvePoint, RunSummary } from '../sim/types.ts';

export function point(
  time: number,
  trips: number,
  accuracy: number,
  extra: Partial<CurvePoint> = {},
): CurvePoint {
  return {
    time,
    trips,
    version: Math.floor(trips / 10),
    bytesUp: trips * 100,
    bytesDown: trips * 120,
    accuracy,
    loss: 1 - accuracy,
    inFlight: 5,
    ...extra,
  };
}

export function summary(
  label: string,
  seed: number,
  curve: CurvePoint[],
  extra: Partial<RunSummary> = {},
): RunSummary {
  const last = curve[curve.length - 1];
  return {
    label,
    strategy: label.toLowerCase(),
    seed,
    stopReason: 'max_trips',
    curve,
    finalAccuracy: last?.accuracy ?? Number.NaN,
    finalLoss: last?.loss ?? Number.NaN,
    counts: { started: 10, completed: 9, accepted: 8, droppedOut: 1, abandoned: 0, rejected: { stale: 1 } },
    stalenessHistogram: [3, 4, 1],
    virtualSeconds: last?.time ?? 0,
    wallSeconds: 0.5,
    bytesUp: last?.bytesUp ?? 0,
    bytesDown: last?.bytesDown ?? 0,
    ...extra,
  };
}
