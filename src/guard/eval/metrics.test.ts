import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../../core/rng.ts';
import {
  averagePrecision,
  binaryMetrics,
  precisionRecallCurve,
  type ScoredExample,
  thinCurve,
} from './metrics.ts';

const close = (actual: number | null, expected: number, eps = 1e-12) => {
  assert.ok(actual !== null, `expected ${expected}, got null`);
  assert.ok(Math.abs(actual - expected) <= eps, `expected ${expected}, got ${actual}`);
};

// Eight examples, U = unsafe (positive), S = safe, threshold 0.5:
//   a .9 U   b .8 S   c .7 U   d .6 U   e .5 S   f .4 U   g .3 S   h .2 S
const EIGHT: ScoredExample[] = [
  [0.9, true],
  [0.8, false],
  [0.7, true],
  [0.6, true],
  [0.5, false],
  [0.4, true],
  [0.3, false],
  [0.2, false],
].map(([score, unsafe]) => ({
  score: score as number,
  unsafe: unsafe as boolean,
  predictedUnsafe: (score as number) >= 0.5,
}));

test('binary metrics by hand on eight examples', () => {
  const m = binaryMetrics(EIGHT);
  // Predicted unsafe: a b c d e → TP = {a,c,d} = 3, FP = {b,e} = 2; FN = {f} = 1; TN = {g,h} = 2.
  assert.deepEqual([m.tp, m.fp, m.fn, m.tn, m.positives, m.negatives, m.n], [3, 2, 1, 2, 4, 4, 8]);
  close(m.precision, 3 / 5); // 0.6
  close(m.recall, 3 / 4); // 0.75
  close(m.f1, (2 * 0.6 * 0.75) / (0.6 + 0.75)); // 0.9 / 1.35 = 2/3
  close(m.f1, 2 / 3);
  close(m.falsePositiveRate, 2 / 4);
  // Average precision, walking down the ranking; a term only where recall rises:
  //   a: P = 1/1, R 0 → 1/4   : 1/4 · 1   = 12/48
  //   c: P = 2/3, R → 2/4     : 1/4 · 2/3 =  8/48
  //   d: P = 3/4, R → 3/4     : 1/4 · 3/4 =  9/48
  //   f: P = 4/6, R → 4/4     : 1/4 · 2/3 =  8/48      AP = 37/48
  close(m.auprc, 37 / 48);
});

test('average precision groups tied scores into one threshold', () => {
  // 0.8 U, 0.8 S enter together: P = 1/2, R = 1/2 → 1/4; then 0.3 U: P = 2/3, R = 1 → 1/2 · 2/3 = 1/3.
  // AP = 1/4 + 1/3 = 7/12. Breaking the tie U-first would credit P = 1 at R = 1/2: 1/2 + 1/3 = 5/6.
  close(averagePrecision([0.8, 0.8, 0.3, 0.1], [true, false, true, false]), 7 / 12);
  const curve = precisionRecallCurve([0.8, 0.8, 0.3, 0.1], [true, false, true, false]);
  assert.deepEqual(
    curve.map((p) => [p.threshold, p.precision, p.recall]),
    [
      [0.8, 0.5, 0.5],
      [0.3, 2 / 3, 1],
      [0.1, 0.5, 1],
    ],
  );
});

test('a perfect ranking has AP 1; the worst possible ranking has AP = mean of k/(n_neg+k)', () => {
  close(averagePrecision([0.9, 0.8, 0.1, 0.05], [true, true, false, false]), 1);
  // Positives ranked last of 4 (2 neg, 2 pos): precision at them 1/3 and 2/4 → AP = (1/3 + 1/2)/2 = 5/12.
  close(averagePrecision([0.9, 0.8, 0.1, 0.05], [false, false, true, true]), 5 / 12);
});

test('undefined ratios are null, not 0', () => {
  const allSafe = binaryMetrics([
    { score: 0.1, unsafe: false, predictedUnsafe: false },
    { score: 0.2, unsafe: false, predictedUnsafe: false },
  ]);
  assert.equal(allSafe.precision, null); // nothing predicted unsafe
  assert.equal(allSafe.recall, null); // no positives
  assert.equal(allSafe.f1, null);
  assert.equal(allSafe.auprc, null);
  assert.equal(allSafe.falsePositiveRate, 0);
  const missedAll = binaryMetrics([
    { score: 0.6, unsafe: false, predictedUnsafe: true },
    { score: 0.2, unsafe: true, predictedUnsafe: false },
  ]);
  assert.equal(missedAll.precision, 0);
  assert.equal(missedAll.recall, 0);
  assert.equal(missedAll.f1, 0);
  close(missedAll.auprc, 0.5); // the positive is ranked 2nd of 2: precision 1/2 at recall 1
  assert.equal(binaryMetrics([]).falsePositiveRate, null);
});

/** Second method: for every distinct threshold, count predictions from scratch (O(n²)). */
function bruteForceAp(scores: number[], labels: boolean[]): number {
  const thresholds = [...new Set(scores)].sort((a, b) => b - a);
  const positives = labels.filter(Boolean).length;
  let ap = 0;
  let prevRecall = 0;
  for (const t of thresholds) {
    let tp = 0;
    let predicted = 0;
    for (let i = 0; i < scores.length; i++) {
      if ((scores[i] as number) >= t) {
        predicted++;
        if (labels[i]) tp++;
      }
    }
    const recall = tp / positives;
    ap += (recall - prevRecall) * (tp / predicted);
    prevRecall = recall;
  }
  return ap;
}

/** Third method (distinct scores only): AP = mean over positives of precision at the positive's rank. */
function rankAp(scores: number[], labels: boolean[]): number {
  const order = scores.map((_, i) => i).sort((a, b) => (scores[b] as number) - (scores[a] as number));
  let tp = 0;
  let sum = 0;
  order.forEach((i, rank) => {
    if (labels[i]) {
      tp++;
      sum += tp / (rank + 1);
    }
  });
  return sum / tp;
}

test('sorted-scan AP equals a brute-force threshold sweep (with ties) and the rank formula (without)', () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 40; trial++) {
    const n = 5 + Math.floor(rng.next() * 120);
    const labels: boolean[] = [];
    const tied: number[] = [];
    const distinct: number[] = [];
    for (let i = 0; i < n; i++) {
      const unsafe = rng.next() < 0.4;
      labels.push(unsafe);
      const s = Math.min(1, Math.max(0, (unsafe ? 0.62 : 0.4) + 0.25 * rng.normal()));
      tied.push(Math.round(s * 10) / 10); // few distinct values: many ties
      distinct.push(s + i * 1e-9);
    }
    if (!labels.includes(true) || !labels.includes(false)) continue;
    close(averagePrecision(tied, labels), bruteForceAp(tied, labels), 1e-12);
    close(averagePrecision(distinct, labels), rankAp(distinct, labels), 1e-12);
  }
});

test('bad inputs: mismatched lengths and non-finite scores throw', () => {
  assert.throws(() => precisionRecallCurve([0.1, 0.2], [true]), RangeError);
  assert.throws(() => precisionRecallCurve([Number.NaN], [true]), /not finite/);
});

test('thinCurve keeps both ends and at most max points', () => {
  const pts = Array.from({ length: 1000 }, (_, i) => ({
    threshold: 1 - i / 1000,
    precision: 1,
    recall: i / 999,
  }));
  const thin = thinCurve(pts, 50);
  assert.equal(thin.length, 50);
  assert.equal(thin[0], pts[0]);
  assert.equal(thin[49], pts[999]);
  assert.equal(thinCurve(pts.slice(0, 10), 50).length, 10);
});
