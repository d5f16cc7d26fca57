/**
 * Binary moderation metrics with "unsafe" as the positive class.
 *
 * - precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R),
 *   false-positive rate = FP / (FP + TN). A ratio whose denominator is 0 is `null` (undefined),
 *   never silently 0 or 1, so a report cannot claim a value it did not measure.
 * - AUPRC is **average precision, step-wise** (the estimator of scikit-learn's
 *   `average_precision_score`): AP = Σₖ (Rₖ − Rₖ₋₁) · Pₖ over the distinct score thresholds in
 *   descending order, examples with equal scores entering together. No interpolation: the
 *   trapezoidal rule over PR points is optimistic. AP is `null` without both classes.
 */

export interface ScoredExample {
  /** Ground truth: true when the example is unsafe (the positive class). */
  readonly unsafe: boolean;
  /** P(unsafe) from the guard, in [0, 1]. */
  readonly score: number;
  /** The guard's verdict (score ≥ threshold, or the backend's own verdict). */
  readonly predictedUnsafe: boolean;
}

export interface BinaryMetrics {
  readonly n: number;
  readonly positives: number;
  readonly negatives: number;
  readonly tp: number;
  readonly fp: number;
  readonly tn: number;
  readonly fn: number;
  readonly precision: number | null;
  readonly recall: number | null;
  readonly f1: number | null;
  readonly falsePositiveRate: number | null;
  readonly auprc: number | null;
}

export interface PrPoint {
  /** Examples with score ≥ threshold are predicted unsafe at this point. */
  readonly threshold: number;
  readonly precision: number;
  readonly recall: number;
}

function ratio(num: number, den: number): number | null {
  return den === 0 ? null : num / den;
}

export function confusion(examples: readonly ScoredExample[]): {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
} {
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (const e of examples) {
    if (e.predictedUnsafe) {
      if (e.unsafe) tp++;
      else fp++;
    } else if (e.unsafe) fn++;
    else tn++;
  }
  return { tp, fp, tn, fn };
}

/**
 * The PR curve by one sorted scan: one point per distinct score, from the highest threshold
 * (fewest predicted unsafe) to the lowest (all predicted unsafe). Empty without positives.
 */
export function precisionRecallCurve(scores: ArrayLike<number>, labels: ArrayLike<boolean>): PrPoint[] {
  const n = scores.length;
  if (labels.length !== n)
    throw new RangeError(`scores (${n}) and labels (${labels.length}) differ in length`);
  let totalPositives = 0;
  for (let i = 0; i < n; i++) {
    const s = scores[i] as number;
    if (!Number.isFinite(s)) throw new RangeError(`score ${i} is not finite (${s})`);
    if (labels[i]) totalPositives++;
  }
  if (totalPositives === 0) return [];
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (a, b) => (scores[b] as number) - (scores[a] as number),
  );
  const points: PrPoint[] = [];
  let tp = 0;
  let predicted = 0;
  let k = 0;
  while (k < n) {
    const threshold = scores[order[k] as number] as number;
    // Ties share one threshold: all of them cross it together.
    while (k < n && scores[order[k] as number] === threshold) {
      if (labels[order[k] as number]) tp++;
      predicted++;
      k++;
    }
    points.push({ threshold, precision: tp / predicted, recall: tp / totalPositives });
  }
  return points;
}

/** Step-wise average precision (see the module comment); null without both classes. */
export function averagePrecision(scores: ArrayLike<number>, labels: ArrayLike<boolean>): number | null {
  const points = precisionRecallCurve(scores, labels);
  if (points.length === 0) return null;
  let negatives = 0;
  for (let i = 0; i < labels.length; i++) if (!labels[i]) negatives++;
  if (negatives === 0) return null;
  let ap = 0;
  let previousRecall = 0;
  for (const p of points) {
    ap += (p.recall - previousRecall) * p.precision;
    previousRecall = p.recall;
  }
  return ap;
}

export function binaryMetrics(examples: readonly ScoredExample[]): BinaryMetrics {
  const { tp, fp, tn, fn } = confusion(examples);
  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  const f1 = precision === null || recall === null ? null : ratio(2 * precision * recall, precision + recall);
  const auprc = averagePrecision(
    examples.map((e) => e.score),
    examples.map((e) => e.unsafe),
  );
  return {
    n: examples.length,
    positives: tp + fn,
    negatives: fp + tn,
    tp,
    fp,
    tn,
    fn,
    precision,
    recall,
    // F1 with P = R = 0 (TP = 0 but something predicted and something positive) is 0, not undefined.
    f1: f1 === null && tp === 0 && precision !== null && recall !== null ? 0 : f1,
    falsePositiveRate: ratio(fp, fp + tn),
    auprc,
  };
}

/**
 * Thins a PR curve for plotting: keeps the first and last points and at most `max` in all, taken
 * at evenly spaced indices (the full curve stays in results.json).
 */
export function thinCurve(points: readonly PrPoint[], max: number): PrPoint[] {
  if (points.length <= max) return [...points];
  const out: PrPoint[] = [];
  const step = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * step)] as PrPoint);
  return out;
}
