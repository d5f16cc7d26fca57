import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { fixedPointFor, quantizationStep } from '../../privacy/secagg/fixedpoint.ts';
import { SecureAggregationSpecSchema } from '../spec.ts';
import { FedBuff, type FedBuffOptions, secureGroupShape } from './fedbuff.ts';

const DIM = 30;
const K = 4;
const STEPS = 5;

function base(): FedBuffOptions {
  return {
    bufferSize: K,
    staleness: { kind: 'polynomial', exponent: 0.5 },
    maxStaleness: 100,
    serverOptimizer: { kind: 'sgd', lr: 1 },
  };
}

/** Drives a strategy with a fixed, seeded stream of updates (two clients in flight per version). */
function drive(strategy: FedBuff, seed: number): { rejected: Map<string, number> } {
  const rng = new Rng(seed);
  const rejected = new Map<string, number>();
  let id = 0;
  let inFlight: { clientId: number; version: number }[] = [];
  for (let trip = 0; trip < K * STEPS; trip++) {
    while (inFlight.length < 3) {
      const a = strategy.assign(id, 0);
      inFlight.push({ clientId: id++, version: a.version });
    }
    const [next, ...rest] = inFlight;
    inFlight = rest;
    if (next === undefined) break;
    const delta = Float32Array.from({ length: DIM }, () => rng.uniform(-0.5, 0.5));
    const out = strategy.onUpdate(
      {
        clientId: next.clientId,
        baseVersion: next.version,
        delta,
        numExamples: 10 + Math.floor(rng.uniform(0, 50)),
      },
      0,
    );
    if (out.kind === 'rejected') rejected.set(out.reason, (rejected.get(out.reason) ?? 0) + (out.count ?? 1));
  }
  return { rejected };
}

test('FedBuff with secure aggregation steps to the plain FedBuff parameters within fixed-point error', () => {
  const spec = SecureAggregationSpecSchema.parse({ clipRange: 1 });
  const plain = new FedBuff(base(), new Float32Array(DIM));
  const secure = new FedBuff({ ...base(), secureAggregation: spec }, new Float32Array(DIM));
  drive(plain, 9);
  drive(secure, 9);
  assert.equal(secure.name, 'fedbuff-secagg');
  assert.equal(plain.version, STEPS);
  assert.equal(secure.version, STEPS);
  // Per step each coordinate of the sum is off by at most K·clip/L (fixedpoint.ts), then scaled by
  // n_max/Σn ≤ 1 and lr = 1; the updates here do not depend on the parameters, so errors add up:
  // STEPS · K · quantizationStep (twice the decode bound), plus float32 rounding of both paths:
  // 4 ulps of the largest parameter per step.
  const largest = Math.max(...Array.from(plain.params, Math.abs));
  const bound =
    STEPS *
    (K * quantizationStep(fixedPointFor(spec.clipRange, K, spec.modulusBits)) + 4 * 2 ** -23 * largest);
  let worst = 0;
  for (let i = 0; i < DIM; i++)
    worst = Math.max(worst, Math.abs((plain.params[i] as number) - (secure.params[i] as number)));
  assert.ok(worst <= bound, `max |Δparam| ${worst} > bound ${bound}`);
  // The parameters really moved, so equality is not trivial.
  assert.ok(largest > 100 * bound);
});

test('a group below threshold is dropped whole and counted as secagg_abort', () => {
  const secure = new FedBuff(
    { ...base(), secureAggregation: SecureAggregationSpecSchema.parse({ dropoutRate: 0.95, seed: 1 }) },
    new Float32Array(DIM),
  );
  const before = Float32Array.from(secure.params);
  const { rejected } = drive(secure, 2);
  assert.equal(secure.version, 0);
  assert.ok(secure.abortedGroups >= 1);
  assert.equal(rejected.get('secagg_abort'), secure.abortedGroups * K);
  assert.deepEqual(secure.params, before);
  assert.equal(secure.bufferedUpdates, 0);
});

test('secure aggregation together with DP is refused', () => {
  assert.throws(
    () =>
      new FedBuff(
        {
          ...base(),
          secureAggregation: SecureAggregationSpecSchema.parse({}),
          privacy: { clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, accountant: 'rdp' },
        },
        new Float32Array(DIM),
      ),
    /privacy and secureAggregation/,
  );
});

// ---- Groups formed at check-in ----

function checkin(bufferSize: number, spec: Record<string, unknown>, dim = DIM): FedBuff {
  return new FedBuff(
    {
      ...base(),
      bufferSize,
      secureAggregation: SecureAggregationSpecSchema.parse({ grouping: 'checkin', ...spec }),
    },
    new Float32Array(dim),
  );
}

function randomDelta(rng: Rng, dim = DIM): Float32Array {
  return Float32Array.from({ length: dim }, () => rng.uniform(-0.5, 0.5));
}

function report(
  s: FedBuff,
  clientId: number,
  baseVersion: number,
  delta: Float32Array,
  numExamples: number,
  now = 0,
) {
  return s.onUpdate({ clientId, baseVersion, delta, numExamples }, now);
}

/** Fixed-point tolerance for one step of `members` clients (fixedpoint.ts bound plus float32 rounding). */
function tolerance(members: number, spec = SecureAggregationSpecSchema.parse({})): number {
  return members * quantizationStep(fixedPointFor(spec.clipRange, members, spec.modulusBits)) + 1e-6;
}

function maxDiff(a: Float32Array, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
}

test('check-in: clients join the forming cohort when assigned; K reports close it and abandon its stragglers', () => {
  // K = 4, 50% over-selection: cohorts of 6. Clients 0–5 form cohort A, client 6 opens cohort B.
  const s = checkin(4, { overSelection: 0.5 });
  for (let id = 0; id < 7; id++) s.assign(id, 0);
  const rng = new Rng(11);
  const reporters = [0, 2, 3, 5];
  const deltas = reporters.map(() => randomDelta(rng));
  const examples = [5, 20, 8, 13];
  for (let i = 0; i < 3; i++) {
    const out = report(s, reporters[i] as number, 0, deltas[i] as Float32Array, examples[i] as number);
    assert.ok(out.kind === 'accepted' && !out.stepped);
  }
  assert.equal(s.bufferedUpdates, 3);
  const last = report(s, 5, 0, deltas[3] as Float32Array, examples[3] as number);
  assert.ok(last.kind === 'accepted' && last.stepped, JSON.stringify(last));
  assert.deepEqual([...last.abandoned].sort(), [1, 4]);
  assert.equal(s.version, 1);
  // Reference: plain FedBuff summing the same four reports.
  const plain = new FedBuff({ ...base(), bufferSize: 4 }, new Float32Array(DIM));
  for (let i = 0; i < 4; i++) plain.assign(reporters[i] as number, 0);
  for (let i = 0; i < 4; i++)
    report(plain, reporters[i] as number, 0, deltas[i] as Float32Array, examples[i] as number);
  assert.equal(plain.version, 1);
  assert.ok(maxDiff(s.params, plain.params) <= tolerance(6), `diff ${maxDiff(s.params, plain.params)}`);
  assert.ok(Math.max(...Array.from(plain.params, Math.abs)) > 0.01);
  // An abandoned straggler's late report is refused; client 6 is buffered in cohort B.
  assert.equal(report(s, 1, 0, randomDelta(rng), 3).kind, 'rejected');
  assert.equal(report(s, 6, 0, randomDelta(rng), 3).kind, 'accepted');
  assert.equal(s.bufferedUpdates, 1);
});

test('check-in: staleness weights are applied by each client before masking', () => {
  // K = 2, cohorts of 3. Cohort A (0,1,2) and B (3,4,5) check in at version 0; B closes first, so
  // A's reports carry staleness 1 and weight 1/√2 each.
  const s = checkin(2, { overSelection: 0.5 });
  for (let id = 0; id < 6; id++) s.assign(id, 0);
  const rng = new Rng(12);
  const d = Array.from({ length: 4 }, () => randomDelta(rng));
  const n = [4, 9, 6, 2];
  report(s, 3, 0, d[0] as Float32Array, n[0] as number);
  const b = report(s, 4, 0, d[1] as Float32Array, n[1] as number);
  assert.ok(b.kind === 'accepted' && b.stepped && b.staleness === 0);
  report(s, 0, 0, d[2] as Float32Array, n[2] as number);
  const a = report(s, 1, 0, d[3] as Float32Array, n[3] as number);
  assert.ok(a.kind === 'accepted' && a.stepped && a.staleness === 1);
  // The sign convention of the server step, from plain FedBuff with one unit update.
  const unit = new FedBuff({ ...base(), bufferSize: 1 }, new Float32Array(1));
  unit.assign(0, 0);
  report(unit, 0, 0, Float32Array.of(1), 1);
  const sign = unit.params[0] as number;
  assert.equal(Math.abs(sign), 1);
  // By hand: sgd with lr 1 adds sign · Σ n·w·Δ / Σ n per step.
  const w = 1 / Math.sqrt(2);
  const expected = Array.from({ length: DIM }, (_, i) => {
    const stepB = ((n[0] as number) * (d[0]?.[i] as number) + (n[1] as number) * (d[1]?.[i] as number)) / 13;
    const stepA =
      ((n[2] as number) * w * (d[2]?.[i] as number) + (n[3] as number) * w * (d[3]?.[i] as number)) / 8;
    return sign * (stepB + stepA);
  });
  assert.ok(maxDiff(s.params, expected) <= 2 * tolerance(3), `diff ${maxDiff(s.params, expected)}`);
});

test('check-in: a full cohort closes at its timeout with the reports it has, or aborts below threshold', () => {
  // K = 5, 20% over-selection: cohorts of 6, threshold 4 (majority of 6), timeout 5 virtual s.
  const s = checkin(5, { overSelection: 0.2, groupTimeout: 5 });
  for (let id = 0; id < 6; id++) s.assign(id, 0);
  assert.equal(s.nextDeadline(), 5);
  const rng = new Rng(13);
  const deltas = [0, 1, 2, 3].map(() => randomDelta(rng));
  for (let i = 0; i < 4; i++) report(s, i, 0, deltas[i] as Float32Array, 10, 1 + i);
  assert.equal(s.version, 0);
  const t = s.onTimer(5);
  assert.ok(t.stepped);
  assert.deepEqual([...t.abandoned].sort(), [4, 5]);
  const plain = new FedBuff({ ...base(), bufferSize: 4 }, new Float32Array(DIM));
  for (let i = 0; i < 4; i++) plain.assign(i, 0);
  for (let i = 0; i < 4; i++) report(plain, i, 0, deltas[i] as Float32Array, 10);
  assert.ok(maxDiff(s.params, plain.params) <= tolerance(6));
  assert.equal(s.nextDeadline(), Number.POSITIVE_INFINITY);

  // Next cohort: 3 reports < t = 4 at the timeout: the group aborts, the model does not move.
  for (let id = 10; id < 16; id++) s.assign(id, 10);
  const before = Float32Array.from(s.params);
  for (let i = 0; i < 3; i++) report(s, 10 + i, 1, randomDelta(rng), 10, 11);
  const aborted = s.onTimer(15);
  assert.equal(aborted.stepped, false);
  assert.deepEqual([...aborted.abandoned].sort(), [13, 14, 15]);
  assert.equal(s.abortedGroups, 1);
  assert.equal(s.abortedUpdates, 3);
  assert.deepEqual(s.params, before);
  assert.equal(s.bufferedUpdates, 0);
});

test('check-in: dropouts during training are protocol dropouts; a settled cohort closes without waiting', () => {
  const s = checkin(5, { overSelection: 0.2 }); // cohorts of 6, no timeout
  for (let id = 0; id < 6; id++) s.assign(id, 0);
  const rng = new Rng(14);
  for (let i = 0; i < 4; i++) report(s, i, 0, randomDelta(rng), 7, 1);
  assert.equal(s.nextDeadline(), Number.POSITIVE_INFINITY);
  s.onDropout(4, 2);
  s.onDropout(5, 3);
  assert.equal(s.nextDeadline(), 3);
  const t = s.onTimer(3);
  assert.ok(t.stepped);
  assert.equal(t.abandoned.length, 0);
  assert.equal(s.version, 1);
});

test('custom threshold reaches the protocol: t = group size aborts on one dropout, the majority does not', () => {
  const run = (threshold?: number) => {
    const s = checkin(4, { overSelection: 0, ...(threshold !== undefined ? { threshold } : {}) });
    for (let id = 0; id < 4; id++) s.assign(id, 0);
    const rng = new Rng(15);
    s.onDropout(3, 0);
    for (let i = 0; i < 3; i++) report(s, i, 0, randomDelta(rng), 5);
    return { s, t: s.onTimer(0) };
  };
  const strict = run(4);
  assert.equal(strict.t.stepped, false);
  assert.equal(strict.s.abortedGroups, 1);
  const majority = run();
  assert.equal(majority.t.stepped, true);
});

test('SecAgg+ with a custom neighbour count sums like plain FedBuff', () => {
  // Cohorts of 10, each client with 4 neighbours (5 holders, threshold 3).
  const s = checkin(8, { overSelection: 0.25, mode: 'secagg+', neighbours: 4, threshold: 3 });
  const plain = new FedBuff({ ...base(), bufferSize: 8 }, new Float32Array(DIM));
  const rng = new Rng(16);
  for (let id = 0; id < 10; id++) s.assign(id, 0);
  for (let id = 0; id < 8; id++) plain.assign(id, 0);
  let last: ReturnType<FedBuff['onUpdate']> | undefined;
  for (let id = 0; id < 8; id++) {
    const d = randomDelta(rng);
    last = report(s, id, 0, d, 3 + id);
    report(plain, id, 0, d, 3 + id);
  }
  assert.ok(last?.kind === 'accepted' && last.stepped);
  assert.ok(maxDiff(s.params, plain.params) <= tolerance(10));
});

test('secure-aggregation spec validation: threshold must be a reachable majority, neighbours a valid degree', () => {
  const issues = (bufferSize: number, spec: Record<string, unknown>): string[] => {
    const parsed = SecureAggregationSpecSchema.safeParse(spec);
    if (!parsed.success) return parsed.error.issues.map((i) => `secureAggregation.${i.path.join('.')}`);
    try {
      secureGroupShape(bufferSize, parsed.data);
      return [];
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      return e.issues.map((i) => i.path);
    }
  };
  // Defaults: majority thresholds, valid for arrival and check-in groups.
  assert.deepEqual(issues(10, {}), []);
  assert.deepEqual(issues(10, { grouping: 'checkin' }), []);
  assert.equal(secureGroupShape(10, SecureAggregationSpecSchema.parse({ grouping: 'checkin' })).size, 13);
  // t ≤ half of the holders would let the server gather both kinds of shares.
  assert.deepEqual(issues(10, { threshold: 5 }), ['secureAggregation.threshold']);
  assert.deepEqual(issues(10, { threshold: 6 }), []);
  assert.deepEqual(issues(10, { threshold: 11 }), ['secureAggregation.threshold']);
  // Check-in: 13 members, t must be ≥ 7 and ≤ K = 10 (K reports close the group).
  assert.deepEqual(issues(10, { grouping: 'checkin', threshold: 11 }), ['secureAggregation.threshold']);
  assert.deepEqual(issues(10, { grouping: 'checkin', threshold: 7 }), []);
  // Neighbours: SecAgg+ only; 2 ≤ k ≤ n − 1; n·k even; t a majority of k + 1.
  assert.deepEqual(issues(10, { neighbours: 4 }), ['secureAggregation.neighbours']);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 3 }), ['secureAggregation.neighbours']);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 9 }), ['secureAggregation.neighbours']);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 1 }), ['secureAggregation.neighbours']);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 4 }), []);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 4, threshold: 2 }), [
    'secureAggregation.threshold',
  ]);
  assert.deepEqual(issues(9, { mode: 'secagg+', neighbours: 4, threshold: 3 }), []);
  assert.deepEqual(issues(2, {}), ['secureAggregation.bufferSize']);
  assert.deepEqual(issues(10, { groupTimeout: 5 }), ['secureAggregation.groupTimeout']);
  // The strategy refuses the same configs when built directly.
  assert.throws(() => checkin(10, { threshold: 11 }), ConfigError);
});
