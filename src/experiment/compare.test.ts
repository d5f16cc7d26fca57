import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareRuns, reachedTarget } from './compare.ts';
import { point, summary } from './fixtures.ts';

test('reachedTarget prefers the simulator record, else the first curve point at or above target', () => {
  const curve = [point(1, 10, 0.2), point(2, 20, 0.79), point(3, 30, 0.8), point(4, 40, 0.9)];
  assert.deepEqual(reachedTarget(summary('A', 0, curve), 0.8), { time: 3, trips: 30, bytesUp: 3000 });
  const recorded = summary('A', 0, curve, { toTarget: { time: 2.5, trips: 25, bytesUp: 2500, version: 2 } });
  assert.equal(reachedTarget(recorded, 0.8)?.time, 2.5);
  assert.equal(reachedTarget(summary('A', 0, curve), 0.95), null);
  assert.equal(reachedTarget(summary('A', 0, curve, { stopReason: 'diverged' }), 0.1), null);
});

test('ratios are other ÷ baseline, matched by seed, null when either misses the target', () => {
  const runs = [
    // Baseline reaches 0.8 at t=10, 100 trips, 10,000 bytes (seed 0) and t=20, 50 trips (seed 1).
    summary('FedBuff', 0, [point(5, 50, 0.5), point(10, 100, 0.8)]),
    summary('FedBuff', 1, [point(20, 50, 0.85)]),
    // Other reaches it at t=25, 300 trips, 30,000 bytes → 2.5, 3, 3 (seed 0); t=10, 100 trips → 0.5, 2, 2.
    summary('FedAvgM', 0, [point(25, 300, 0.81)]),
    summary('FedAvgM', 1, [point(10, 100, 0.9)]),
    // Never reaches it.
    summary('FedAsync', 0, [point(50, 500, 0.7)]),
  ];
  const c = compareRuns(runs, 0.8);
  assert.equal(c.length, 3);
  assert.deepEqual(c[0], {
    label: 'FedAvgM',
    baseline: 'FedBuff',
    seed: 0,
    timeRatio: 2.5,
    tripsRatio: 3,
    bytesRatio: 3,
  });
  assert.deepEqual(c[1], {
    label: 'FedAvgM',
    baseline: 'FedBuff',
    seed: 1,
    timeRatio: 0.5,
    tripsRatio: 2,
    bytesRatio: 2,
  });
  assert.deepEqual(c[2], {
    label: 'FedAsync',
    baseline: 'FedBuff',
    seed: 0,
    timeRatio: null,
    tripsRatio: null,
    bytesRatio: null,
  });
  assert.deepEqual(compareRuns(runs, null), []);
});

test('a baseline that misses the target gives null ratios', () => {
  const runs = [summary('B', 0, [point(5, 50, 0.5)]), summary('O', 0, [point(5, 50, 0.9)])];
  assert.equal(compareRuns(runs, 0.8)[0]?.timeRatio, null);
});
