import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../../core/errors.ts';
import type { OptimizerSpec } from '../spec.ts';
import type { ClientUpdate, UpdateOutcome } from '../types.ts';
import { type SyncOptions, SyncRounds } from './sync.ts';

function sync(options: Partial<SyncOptions>, init: ArrayLike<number> = [0, 0]): SyncRounds {
  return new SyncRounds(
    {
      cohortSize: 3,
      overSelection: 0,
      roundTimeout: Number.POSITIVE_INFINITY,
      minUpdates: 1,
      serverOptimizer: { kind: 'sgd', lr: 1 },
      ...options,
    },
    Float32Array.from(init),
  );
}

const upd = (clientId: number, delta: number[], numExamples = 1, baseVersion = 0): ClientUpdate => ({
  clientId,
  baseVersion,
  delta: Float32Array.from(delta),
  numExamples,
});

function ok(out: UpdateOutcome): Extract<UpdateOutcome, { kind: 'accepted' }> {
  assert.equal(out.kind, 'accepted', out.kind === 'rejected' ? out.message : '');
  return out as Extract<UpdateOutcome, { kind: 'accepted' }>;
}

function rejected(out: UpdateOutcome, reason: string): void {
  assert.equal(out.kind, 'rejected');
  assert.equal(out.kind === 'rejected' && out.reason, reason);
}

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `[${i}]: ${a[i]} vs ${b[i]}`);
}

test('names follow the server optimizer', () => {
  assert.equal(sync({}).name, 'fedavg');
  assert.equal(
    sync({ serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.9, nesterov: false } }).name,
    'fedavgm',
  );
  assert.equal(
    sync({ serverOptimizer: { kind: 'adam', lr: 1, beta1: 0.9, beta2: 0.99, eps: 1e-3 } }).name,
    'fedadam',
  );
});

test('FedAvg round: params − example-weighted mean delta', () => {
  const s = sync({ cohortSize: 2 }, [1, 1]);
  s.assign(1, 0);
  s.assign(2, 0);
  assert.equal(ok(s.onUpdate(upd(1, [1, 2], 1), 1)).stepped, false);
  const out = ok(s.onUpdate(upd(2, [4, -1], 3), 2));
  assert.equal(out.stepped, true);
  assert.equal(out.version, 1);
  // mean = (1·[1,2] + 3·[4,−1]) / 4 = [3.25, −0.25]
  assertClose(s.params, [1 - 3.25, 1 + 0.25], 1e-6);
});

test('FedAvgM server steps match hand-computed heavy-ball updates', () => {
  const s = sync(
    { cohortSize: 1, serverOptimizer: { kind: 'momentum', lr: 0.5, momentum: 0.9, nesterov: false } },
    [1, 2],
  );
  const deltas = [
    [1, -2],
    [0.5, 0.5],
    [-1, 0],
  ];
  const p = [1, 2];
  const v = [0, 0];
  for (const [k, d] of deltas.entries()) {
    s.assign(k, k);
    ok(s.onUpdate(upd(k, d, 5, k), k));
    for (let i = 0; i < 2; i++) {
      v[i] = 0.9 * (v[i] as number) + (d[i] as number);
      p[i] = (p[i] as number) - 0.5 * (v[i] as number);
    }
    assertClose(s.params, p, 1e-6);
  }
  // Spot check of round two by hand: v = 0.9·[1,−2] + [0.5,0.5] = [1.4, −1.3], p after three rounds:
  // v3 = 0.9·[1.4,−1.3] + [−1,0] = [0.26, −1.17]; p = [1,2] − 0.5·([1,−2] + [1.4,−1.3] + [0.26,−1.17]).
  assertClose(s.params, [1 - 0.5 * 2.66, 2 + 0.5 * 4.47], 1e-6);
});

test('FedAdam server steps match hand-computed Adam updates', () => {
  const beta1 = 0.9;
  const beta2 = 0.99;
  const tau = 0.01;
  const lr = 0.1;
  const s = sync({ cohortSize: 1, serverOptimizer: { kind: 'adam', lr, beta1, beta2, eps: tau } }, [0, 0]);
  // First step by hand: m̂ = g, v̂ = g², so p1 = −lr·g/(|g| + τ).
  s.assign(0, 0);
  ok(s.onUpdate(upd(0, [2, -0.5], 1, 0), 0));
  assertClose(s.params, [-0.1 * (2 / 2.01), 0.1 * (0.5 / 0.51)], 1e-6);
  // Second step: recompute the moments in float64.
  s.assign(1, 1);
  ok(s.onUpdate(upd(1, [1, 1], 1, 1), 1));
  const g1 = [2, -0.5];
  const g2 = [1, 1];
  const expected = [0, 1].map((i) => {
    const a = g1[i] as number;
    const b = g2[i] as number;
    const p1 = (-lr * a) / (Math.abs(a) + tau);
    const m = beta1 * (1 - beta1) * a + (1 - beta1) * b;
    const v = beta2 * (1 - beta2) * a * a + (1 - beta2) * b * b;
    const mHat = m / (1 - beta1 ** 2);
    const vHat = v / (1 - beta2 ** 2);
    return p1 - (lr * mHat) / (Math.sqrt(vHat) + tau);
  });
  assertClose(s.params, expected, 1e-6);
});

test('over-selection: demand asks for ceil(cohort · (1 + over)) clients, capped by concurrency', () => {
  assert.equal(sync({ cohortSize: 100, overSelection: 0.3 }).demand(0, 0, 1000), 130);
  assert.equal(sync({ cohortSize: 10, overSelection: 0.25 }).demand(0, 0, 1000), 13);
  const s = sync({ cohortSize: 3, overSelection: 1 });
  assert.equal(s.demand(0, 0, 4), 4);
  for (let i = 0; i < 4; i++) s.assign(i, 0);
  assert.equal(s.demand(0, 4, 100), 2);
  s.assign(4, 0);
  s.assign(5, 0);
  assert.equal(s.demand(0, 6, 100), 0);
});

test('round closes at cohortSize; stragglers are abandoned and their late updates rejected', () => {
  const s = sync({ cohortSize: 3, overSelection: 1 });
  for (let i = 0; i < 6; i++) s.assign(i, 0);
  ok(s.onUpdate(upd(4, [1, 0]), 1));
  ok(s.onUpdate(upd(0, [1, 0]), 2));
  const out = ok(s.onUpdate(upd(2, [1, 0]), 3));
  assert.equal(out.stepped, true);
  assert.deepEqual([...out.abandoned].sort(), [1, 3, 5]);
  assert.equal(s.version, 1);
  assert.equal(s.round, 1);
  const params = s.params;
  rejected(s.onUpdate(upd(1, [9, 9]), 4), 'wrong_round');
  rejected(s.onUpdate(upd(1, [9, 9]), 4), 'not_assigned');
  assert.equal(s.params, params);
  // The next round selects again.
  assert.equal(s.demand(5, 2, 100), 6);
});

test('round timeout closes with what it has when ≥ minUpdates', () => {
  const s = sync({ cohortSize: 4, roundTimeout: 10, minUpdates: 2 }, [0, 0]);
  assert.equal(s.nextDeadline(), Number.POSITIVE_INFINITY);
  for (let i = 0; i < 4; i++) s.assign(i, 5);
  assert.equal(s.nextDeadline(), 15);
  ok(s.onUpdate(upd(0, [2, 0], 1), 6));
  ok(s.onUpdate(upd(1, [0, 2], 1), 7));
  const early = s.onTimer(14);
  assert.equal(early.stepped, false);
  assert.equal(s.version, 0);
  const t = s.onTimer(15);
  assert.equal(t.stepped, true);
  assert.equal(t.version, 1);
  assert.deepEqual([...t.abandoned].sort(), [2, 3]);
  assertClose(s.params, [-1, -1], 1e-7);
  assert.equal(s.nextDeadline(), Number.POSITIVE_INFINITY);
  rejected(s.onUpdate(upd(2, [1, 1]), 16), 'wrong_round');
});

test('round timeout below minUpdates discards the round and restarts at the same version', () => {
  const s = sync({ cohortSize: 4, roundTimeout: 10, minUpdates: 3 }, [1, 1]);
  for (let i = 0; i < 4; i++) s.assign(i, 0);
  ok(s.onUpdate(upd(0, [5, 5]), 1));
  ok(s.onUpdate(upd(1, [5, 5]), 2));
  const before = s.params;
  const t = s.onTimer(10);
  assert.equal(t.stepped, false);
  assert.equal(t.version, 0);
  assert.deepEqual([...t.abandoned].sort(), [2, 3]);
  assert.equal(s.params, before);
  assert.equal(s.round, 1);
  assert.equal(s.receivedThisRound, 0);
  // The discarded round's updates are gone: a fresh round of 4 averages only its own deltas.
  for (let i = 10; i < 14; i++) s.assign(i, 20);
  assert.equal(s.nextDeadline(), 30);
  for (let i = 10; i < 14; i++) ok(s.onUpdate(upd(i, [1, 0]), 21));
  assertClose(s.params, [0, 1], 1e-7);
});

test('dropouts: when everyone selected is gone, close early (≥ minUpdates) or restart', () => {
  const a = sync({ cohortSize: 3, minUpdates: 1 });
  for (let i = 0; i < 3; i++) a.assign(i, 0);
  ok(a.onUpdate(upd(0, [1, 1]), 1));
  a.onDropout(1, 2);
  assert.equal(a.version, 0);
  a.onDropout(2, 3);
  assert.equal(a.version, 1);
  assertClose(a.params, [-1, -1], 1e-7);

  const b = sync({ cohortSize: 3, minUpdates: 2 });
  for (let i = 0; i < 3; i++) b.assign(i, 0);
  ok(b.onUpdate(upd(0, [1, 1]), 1));
  b.onDropout(1, 2);
  b.onDropout(2, 3);
  assert.equal(b.version, 0);
  assert.equal(b.round, 1);
  assert.equal(b.demand(4, 0, 10), 3);
  // A dropout of a client nobody knows is ignored.
  b.onDropout(77, 5);
  assert.equal(b.round, 1);
});

test('dropouts before selection is complete do not close the round', () => {
  const s = sync({ cohortSize: 2, overSelection: 0.5 });
  s.assign(0, 0);
  s.assign(1, 0);
  s.onDropout(0, 1);
  s.onDropout(1, 1);
  assert.equal(s.round, 0, 'one more client is still to be selected');
  s.assign(2, 2);
  ok(s.onUpdate(upd(2, [1, 0]), 3));
  assert.equal(s.version, 1);
});

test('a rejection that leaves the round without prospects closes it through the timer, not on the spot', () => {
  const s = sync({ cohortSize: 2 }, [0, 0]);
  s.assign(0, 0);
  s.assign(1, 0);
  ok(s.onUpdate(upd(0, [1, 1]), 1));
  const before = s.params;
  rejected(s.onUpdate(upd(1, [Number.NaN, 0]), 2), 'non_finite');
  assert.equal(s.params, before);
  assert.equal(s.version, 0);
  assert.equal(s.nextDeadline(), 2);
  const t = s.onTimer(2);
  assert.equal(t.stepped, true);
  assertClose(s.params, [-1, -1], 1e-7);
});

test('every sync rejection reason leaves params, version and round unchanged', () => {
  const s = sync({ cohortSize: 5 }, [1, 2]);
  for (let i = 0; i < 5; i++) s.assign(i, 0);
  ok(s.onUpdate(upd(0, [1, 1]), 1));
  const check = (u: ClientUpdate, reason: string) => {
    const before = {
      params: s.params,
      copy: new Float32Array(s.params),
      version: s.version,
      round: s.round,
      got: s.receivedThisRound,
    };
    rejected(s.onUpdate(u, 2), reason);
    assert.equal(s.params, before.params);
    assert.deepEqual(s.params, before.copy);
    assert.equal(s.version, before.version);
    assert.equal(s.round, before.round);
    assert.equal(s.receivedThisRound, before.got);
  };
  check(upd(0, [1, 1]), 'not_assigned');
  check(upd(42, [1, 1]), 'not_assigned');
  check(upd(1, [1, 1, 1]), 'shape');
  check(upd(2, [Number.NEGATIVE_INFINITY, 1]), 'non_finite');
  check(upd(3, [1, 1], 1, 3), 'unknown_version');
  check(upd(4, [1, 1], Number.NaN), 'non_finite');
});

test('assigning a client twice and invalid options are typed errors', () => {
  const s = sync({});
  s.assign(1, 0);
  assert.throws(
    () => s.assign(1, 0),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_STATE',
  );
  assert.throws(
    () => sync({ minUpdates: 4, cohortSize: 3 }),
    (e: unknown) => e instanceof OrchardError && e.code === 'CONFIG_INVALID',
  );
  assert.throws(() => sync({ cohortSize: 0 }), OrchardError);
  const bad: OptimizerSpec = { kind: 'sgd', lr: -1 };
  assert.throws(() => sync({ serverOptimizer: bad }), OrchardError);
});

test('sync snapshots handed out are never modified', () => {
  const s = sync(
    { cohortSize: 1, serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.5, nesterov: true } },
    [3, 4],
  );
  const a = s.assign(0, 0);
  const copy = new Float32Array(a.params);
  ok(s.onUpdate(upd(0, [1, 1]), 1));
  s.assign(1, 2);
  ok(s.onUpdate(upd(1, [1, 1], 1, 1), 3));
  assert.deepEqual(a.params, copy);
  assert.notDeepEqual(s.params, copy);
});

test('the last selected client reporting closes a short round (after an earlier dropout)', () => {
  const s = sync({ cohortSize: 3, minUpdates: 2 }, [0, 0]);
  for (let i = 0; i < 3; i++) s.assign(i, 0);
  s.onDropout(1, 1);
  assert.equal(ok(s.onUpdate(upd(0, [1, 0], 1), 2)).stepped, false);
  const last = ok(s.onUpdate(upd(2, [0, 1], 3), 3));
  assert.equal(last.stepped, true);
  assert.deepEqual(last.abandoned, []);
  assertClose(s.params, [-0.25, -0.75], 1e-7);
});

/**
 * A seeded schedule of sync events (assign, update, dropout, timer) driven against `s` from event
 * `from` on; clients that were open at a snapshot are resumed by the caller. Returns the trace of
 * outcomes so two runs can be compared event by event.
 */
function driveSync(s: SyncRounds, events: readonly SyncEvent[], from: number, to: number): string[] {
  const trace: string[] = [];
  for (let i = from; i < to; i++) {
    const e = events[i] as SyncEvent;
    if (e.kind === 'assign') {
      if (s.demand(e.at, 0, Number.POSITIVE_INFINITY) > 0) {
        const a = s.assign(e.client, e.at);
        trace.push(`assign ${e.client} v${a.version} r${a.round}`);
      } else trace.push(`full ${e.client}`);
    } else if (e.kind === 'update') {
      const out = s.onUpdate(
        { clientId: e.client, baseVersion: e.version(s), delta: e.delta, numExamples: e.examples },
        e.at,
      );
      trace.push(
        out.kind === 'accepted'
          ? `ok ${e.client} v${out.version} ${out.stepped} [${out.abandoned.join(',')}]`
          : `rej ${e.client} ${out.reason}`,
      );
    } else if (e.kind === 'dropout') {
      s.onDropout(e.client, e.at);
      trace.push(`drop ${e.client} r${s.round}`);
    } else {
      const out = s.onTimer(e.at);
      trace.push(`timer ${out.stepped} v${out.version} [${out.abandoned.join(',')}]`);
    }
  }
  return trace;
}

type SyncEvent =
  | { kind: 'assign'; client: number; at: number }
  | {
      kind: 'update';
      client: number;
      at: number;
      delta: Float32Array;
      examples: number;
      version: (s: SyncRounds) => number;
    }
  | { kind: 'dropout'; client: number; at: number }
  | { kind: 'timer'; at: number };

test('snapshot mid-round + restore + resumed clients continue exactly like an uninterrupted run', () => {
  const options = {
    cohortSize: 4,
    overSelection: 0.5,
    roundTimeout: 5,
    minUpdates: 2,
    serverOptimizer: { kind: 'momentum', lr: 0.5, momentum: 0.9, nesterov: false } as OptimizerSpec,
  };
  const n = 6;
  const init = Float32Array.from({ length: n }, (_, i) => i / 10);
  // Seeded schedule: clients are assigned, then report (with the version they were given), drop
  // out, or go quiet; time advances so some rounds close by timeout, some at cohortSize.
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const events: SyncEvent[] = [];
  const given = new Map<number, number>();
  let at = 0;
  for (let client = 1; client <= 60; client++) {
    at += rnd() * 1.5;
    events.push({ kind: 'assign', client, at });
    const fate = rnd();
    const later = client - 1 - Math.floor(rnd() * 4);
    if (later >= 1 && fate < 0.75) {
      const delta = Float32Array.from({ length: n }, () => rnd() - 0.5);
      const c = later;
      events.push({
        kind: 'update',
        client: c,
        at,
        delta,
        examples: 1 + Math.floor(rnd() * 5),
        version: () => given.get(c) ?? 0,
      });
    } else if (later >= 1 && fate < 0.85) events.push({ kind: 'dropout', client: later, at });
    if (rnd() < 0.3) events.push({ kind: 'timer', at });
  }
  // The version each client was given is read back from the straight run's assignments.
  const recordVersions = (s: SyncRounds) => {
    const original = s.assign.bind(s);
    s.assign = (client, now) => {
      const a = original(client, now);
      given.set(client, a.version);
      return a;
    };
  };
  const straight = sync(options, init);
  recordVersions(straight);
  const full = driveSync(straight, events, 0, events.length);
  assert.ok(straight.version >= 3, `the schedule steps a few times (version ${straight.version})`);
  assert.ok(full.some((x) => x.startsWith('rej') && x.endsWith('wrong_round')));
  assert.ok(full.some((x) => x.startsWith('timer true')));

  for (const cut of [7, 23, 41, events.length - 5]) {
    given.clear();
    const first = sync(options, init);
    recordVersions(first);
    const head = driveSync(first, events, 0, cut);
    const snap = first.snapshot();
    // Clients still training at the cut (assigned, not yet reported or dropped): resumed below.
    const open = new Map<number, number>();
    for (let i = 0; i < cut; i++) {
      const e = events[i] as SyncEvent;
      if (e.kind === 'assign' && head[i]?.startsWith('assign'))
        open.set(e.client, Number(/ r(\d+)/.exec(head[i] as string)?.[1]));
      if (e.kind === 'update' || e.kind === 'dropout') open.delete(e.client);
    }
    // Moving the old strategy on must not change the snapshot.
    driveSync(first, events, cut, events.length);
    const resumed = sync(options, new Float32Array(n));
    resumed.restore(snap);
    recordVersions(resumed);
    for (const [client, round] of open) resumed.resumeAssignment(client, given.get(client) ?? 0, round);
    const tail = driveSync(resumed, events, cut, events.length);
    assert.deepEqual(head.concat(tail), full, `cut at event ${cut}`);
    assert.equal(resumed.version, straight.version);
    assert.equal(resumed.round, straight.round);
    assert.deepEqual(Array.from(resumed.params), Array.from(straight.params));
  }
});

test('resumeAssignment: closed rounds are rejected as wrong_round, future rounds and versions refused', () => {
  const s = sync({ cohortSize: 1 }, [0, 0]);
  s.assign(1, 0);
  ok(s.onUpdate(upd(1, [1, 1]), 0));
  assert.equal(s.round, 1);
  s.resumeAssignment(7, 0, 0);
  rejected(s.onUpdate(upd(7, [1, 1]), 0), 'wrong_round');
  assert.throws(() => s.resumeAssignment(8, 1, 2), OrchardError);
  assert.throws(() => s.resumeAssignment(8, 0, 1), /round 1 trains version 1/);
  s.resumeAssignment(8, 1, 1, 10);
  assert.equal(s.nextDeadline(), Number.POSITIVE_INFINITY); // no roundTimeout configured
  const timed = sync({ cohortSize: 2, roundTimeout: 3 });
  timed.resumeAssignment(1, 0, 0, 10);
  assert.equal(timed.nextDeadline(), 13);
  ok(timed.onUpdate(upd(1, [2, 2]), 11));
  assert.deepEqual(timed.endRound(), { stepped: true, version: 1, abandoned: [] });
  assert.equal(timed.round, 1);
});

test('departed clients keep their slots; resumeDeparted restores them after a restart without counting twice', () => {
  // ceil(2 · (1 + 1)) = 4 selections per round, 10 s round clock.
  const opts = { cohortSize: 2, overSelection: 1, roundTimeout: 10 };
  const s = sync(opts);
  const fresh = s.snapshot();
  for (let i = 0; i < 4; i++) s.assign(i, 100 + i);
  s.onDropout(0, 104);
  rejected(s.onUpdate(upd(1, [Number.NaN, 0]), 105), 'non_finite');
  assert.equal(s.departedThisRound, 2);
  ok(s.onUpdate(upd(2, [1, 1]), 106));
  assert.equal(s.departedThisRound, 2, 'an accepted update is not a departure');
  assert.equal(s.demand(106, 0, 10), 0);

  // Restart from the round's opening: one client still training, two gone, one update replayed.
  const r = sync(opts);
  r.restore(fresh);
  r.resumeAssignment(7, 0, 0, 100);
  r.resumeDeparted(2, 100, 107);
  assert.equal(r.departedThisRound, 2);
  assert.equal(r.demand(107, 0, 10), 1, '4 − (1 training + 2 gone)');
  assert.equal(r.nextDeadline(), 110);
  r.resumeAssignment(8, 0, 0, 100);
  ok(r.onUpdate(upd(8, [1, 1]), 107));
  assert.equal(r.demand(107, 0, 10), 0);
  assert.equal(r.round, 0);

  // A count the round already holds (from a mid-round snapshot) is not added again.
  const mid = sync(opts);
  mid.assign(0, 100);
  mid.assign(1, 100);
  mid.onDropout(0, 101);
  const again = sync(opts);
  again.restore(mid.snapshot());
  assert.equal(again.departedThisRound, 1);
  again.resumeDeparted(1, 100, 102);
  assert.equal(again.demand(102, 0, 10), 3, '4 − 1 gone (the training client was not resumed)');
  again.resumeDeparted(2, 100, 102);
  assert.equal(again.demand(102, 0, 10), 2);

  // Bad counts are typed errors and change nothing.
  for (const bad of [-1, 1.5, Number.NaN])
    assert.throws(() => again.resumeDeparted(bad, 100, 102), OrchardError);
  assert.equal(again.demand(102, 0, 10), 2);
});

test('resumeDeparted opens the clock of a round nobody resumed, and one with every slot gone closes at the timer', () => {
  const s = sync({ cohortSize: 2, overSelection: 0.5, roundTimeout: 10, minUpdates: 1 });
  s.resumeDeparted(1, 50, 55);
  assert.equal(s.nextDeadline(), 60);
  assert.equal(s.demand(55, 0, 10), 2);
  s.resumeDeparted(3, 50, 56);
  assert.equal(s.demand(56, 0, 10), 0);
  assert.equal(s.nextDeadline(), 56);
  assert.equal(s.round, 0);
  assert.deepEqual(s.onTimer(56), { stepped: false, version: 0, abandoned: [] });
  assert.equal(s.round, 1);
  assert.equal(s.demand(57, 0, 10), 3);
  // Nothing gone: no clock is opened.
  const idle = sync({ cohortSize: 2, roundTimeout: 10 });
  idle.resumeDeparted(0, 50, 55);
  assert.equal(idle.nextDeadline(), Number.POSITIVE_INFINITY);
});

const privacy = (extra: Record<string, unknown>) =>
  ({ delta: 1e-5, population: 50, accountant: 'rdp', ...extra }) as never;

/** Runs `rounds` full rounds of `s` (cohort 3) with seeded deltas; then half a round. */
function dpRounds(s: SyncRounds, rounds: number, seed: number, idBase: number): void {
  let x = seed;
  for (let r = 0; r < rounds * 3 + 2; r++) {
    const id = idBase + r;
    s.resumeAssignment(id, s.version);
    x = (x * 69069 + 1) % 4294967296;
    const d = [((x >>> 8) % 1000) / 250 - 2, ((x >>> 18) % 1000) / 250 - 2];
    ok(s.onUpdate({ clientId: id, baseVersion: s.version, delta: Float32Array.from(d), numExamples: 1 }, 0));
  }
}

test('DP rounds: snapshot + restore keep the ledger (ε, steps), the adaptive clip norm and the open round', () => {
  // Without noise the continuation is exact; with noise the ledger and clip norm must carry over.
  const exact = (): SyncRounds => sync({ privacy: privacy({ clipNorm: 0.5, noiseMultiplier: 0 }) });
  const straight = exact();
  dpRounds(straight, 4, 9, 0);
  const first = exact();
  dpRounds(first, 2, 9, 0); // 2 rounds and 2 updates of the third
  const snap = first.snapshot();
  assert.equal(snap.privacy?.steps, 2);
  assert.equal(snap.privacy?.norms.length, 2);
  const resumed = exact();
  resumed.restore(snap);
  // The rest of the same schedule: the third round's last update, then the others.
  let x = 9;
  const all: number[][] = [];
  for (let r = 0; r < 4 * 3 + 2; r++) {
    x = (x * 69069 + 1) % 4294967296;
    all.push([((x >>> 8) % 1000) / 250 - 2, ((x >>> 18) % 1000) / 250 - 2]);
  }
  for (let r = 8; r < all.length; r++) {
    resumed.resumeAssignment(1000 + r, resumed.version);
    ok(
      resumed.onUpdate(
        {
          clientId: 1000 + r,
          baseVersion: resumed.version,
          delta: Float32Array.from(all[r] as number[]),
          numExamples: 1,
        },
        0,
      ),
    );
  }
  assert.equal(resumed.version, straight.version);
  assert.deepEqual(Array.from(resumed.params), Array.from(straight.params));
  assert.deepEqual(resumed.privacySpent?.(), straight.privacySpent?.());

  const noisy = (): SyncRounds =>
    sync({
      privacy: privacy({
        noiseMultiplier: 1.1,
        adaptive: { initialClipNorm: 1, targetQuantile: 0.5, learningRate: 0.2, countNoiseMultiplier: 5 },
      }),
    });
  const a = noisy();
  dpRounds(a, 3, 4, 0);
  const b = noisy();
  b.restore(a.snapshot());
  assert.deepEqual(b.privacyReport?.(), a.privacyReport?.());
  assert.notEqual(a.privacyReport?.().clipNorm, 1, 'the adaptive clip norm moved');
  assert.ok((a.privacySpent?.().epsilon ?? 0) > 0);
  // One more step each: the ledgers stay equal.
  dpRounds(a, 0, 5, 500);
  dpRounds(b, 0, 5, 500);
  assert.deepEqual([a.version, b.version], [4, 4]);
  assert.deepEqual(b.privacySpent?.(), a.privacySpent?.());
  assert.equal(a.privacySpent?.().steps, 4);
  // A snapshot without a ledger does not restore into a DP strategy, nor the other way round.
  assert.throws(() => noisy().restore(sync({}).snapshot()), /lacks a privacy ledger/);
  assert.throws(() => sync({}).restore(a.snapshot()), /has a privacy ledger/);
});
