import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NonFiniteError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { SecAggClient } from './client.ts';
import type { CryptoProvider } from './crypto.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { WebCryptoProvider } from './crypto-web.ts';
import { SecAggError, type SecAggFailure } from './errors.ts';
import { fixedPointFor, quantizationStep } from './fixedpoint.ts';
import {
  completeGraph,
  hararyGraph,
  majorityThreshold,
  type NeighbourGraph,
  secAggPlusDegree,
} from './graph.ts';
import { holdersOf, type SecAggParams, type SecAggResult } from './messages.ts';
import { type DropoutPlan, runSecAgg } from './run.ts';
import { SecAggServer } from './server.ts';

const CLIP = 1;
const failsWith = (reason: SecAggFailure) => (e: unknown) => e instanceof SecAggError && e.reason === reason;

function makeParams(
  crypto: CryptoProvider,
  graph: NeighbourGraph,
  dimension: number,
  modulusBits = 32,
): SecAggParams {
  return {
    sessionId: crypto.randomBytes(16),
    graph,
    threshold: majorityThreshold(graph.degree + 1),
    dimension,
    encoding: fixedPointFor(CLIP, graph.size, modulusBits),
  };
}

/** Updates slightly wider than the clip range, so clipping is exercised. */
function makeInputs(n: number, dimension: number, seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () =>
    Float32Array.from({ length: dimension }, () => rng.uniform(-1.2, 1.2)),
  );
}

/** The plain float64 sum of the clipped inputs of `clients`: what the server should decode. */
function plainSum(
  inputs: readonly Float32Array[],
  clients: readonly number[],
  dimension: number,
): Float64Array {
  const out = new Float64Array(dimension);
  for (const u of clients)
    for (let i = 0; i < dimension; i++)
      out[i] = (out[i] as number) + Math.min(CLIP, Math.max(-CLIP, (inputs[u] as Float32Array)[i] as number));
  return out;
}

function assertSumMatches(result: SecAggResult, inputs: readonly Float32Array[], params: SecAggParams): void {
  const want = plainSum(inputs, result.survivors, params.dimension);
  // Rounding to nearest: at most step/2 per client, plus float32 rounding of the decoded output.
  const tol = (result.count * quantizationStep(params.encoding)) / 2 + 1e-6 * result.count;
  for (let i = 0; i < params.dimension; i++)
    assert.ok(
      Math.abs((result.sum[i] as number) - (want[i] as number)) <= tol,
      `coordinate ${i}: ${result.sum[i]} vs ${want[i]}`,
    );
}

const STAGES = ['beforeAdvertise', 'beforeShareKeys', 'beforeMaskedInput', 'beforeUnmask'] as const;

/**
 * Whether a run with these dropouts can finish, stated from the protocol's rule: every client that
 * shared keys needs t holders among the clients that answer the unmask request (and earlier, among
 * the clients still there).
 */
function shouldSucceed(graph: NeighbourGraph, t: number, plan: DropoutPlan): boolean {
  let live = new Set(Array.from({ length: graph.size }, (_, i) => i));
  const enough = (owners: Iterable<number>, set: Set<number>) =>
    set.size >= t && [...owners].every((u) => holdersOf(graph, u).filter((h) => set.has(h)).length >= t);
  const sets: Set<number>[] = [];
  for (const stage of STAGES) {
    live = new Set([...live].filter((u) => !new Set(plan[stage] ?? []).has(u)));
    sets.push(live);
  }
  const [u1, u2, u3, u5] = sets as [Set<number>, Set<number>, Set<number>, Set<number>];
  return enough(u1, u1) && enough(u2, u2) && enough(u2, u3) && enough(u2, u5);
}

const providers: CryptoProvider[] = [new NodeCryptoProvider(), new WebCryptoProvider()];

for (const crypto of providers) {
  describe(`SecAgg over ${crypto.name}`, () => {
    test('no dropouts: the sum equals the plain sum and the server sees every client', async () => {
      const params = makeParams(crypto, completeGraph(8), 300);
      const inputs = makeInputs(8, 300, 1);
      const result = await runSecAgg(params, inputs, crypto);
      assert.equal(result.count, 8);
      assert.deepEqual(result.dropped, []);
      assertSumMatches(result, inputs, params);
    });

    for (const fraction of [0.1, 0.3]) {
      for (const stage of STAGES) {
        test(`${fraction * 100}% dropouts ${stage}: the survivors' sum is exact`, async () => {
          const n = 20;
          const params = makeParams(crypto, completeGraph(n), 64);
          const inputs = makeInputs(n, 64, 2);
          const gone = Array.from(
            new Rng(3, Math.round(fraction * 100)).permutation(n).subarray(0, Math.round(fraction * n)),
          );
          const result = await runSecAgg(params, inputs, crypto, { [stage]: gone });
          const expectedSurvivors = stage === 'beforeUnmask' ? n : n - gone.length;
          assert.equal(result.count, expectedSurvivors);
          if (stage === 'beforeMaskedInput')
            assert.deepEqual(
              [...result.dropped],
              [...gone].sort((a, b) => a - b),
            );
          assertSumMatches(result, inputs, params);
        });
      }
    }

    test('10% dropouts at every stage at once', async () => {
      const n = 20;
      const params = makeParams(crypto, completeGraph(n), 64);
      const inputs = makeInputs(n, 64, 4);
      const order = Array.from(new Rng(5).permutation(n));
      const plan = {
        beforeAdvertise: order.slice(0, 2),
        beforeShareKeys: order.slice(2, 4),
        beforeMaskedInput: order.slice(4, 6),
        beforeUnmask: order.slice(6, 8),
      };
      const result = await runSecAgg(params, inputs, crypto, plan);
      assert.equal(result.count, 14);
      assertSumMatches(result, inputs, params);
    });

    test('too many dropouts abort with BELOW_THRESHOLD at the stage where they happen', async () => {
      const n = 10; // t = 6
      const inputs = makeInputs(n, 16, 6);
      for (const stage of STAGES) {
        const params = makeParams(crypto, completeGraph(n), 16);
        await assert.rejects(
          runSecAgg(params, inputs, crypto, { [stage]: [0, 1, 2, 3, 4] }),
          failsWith('BELOW_THRESHOLD'),
        );
      }
      // Exactly t left still works.
      const params = makeParams(crypto, completeGraph(n), 16);
      const result = await runSecAgg(params, inputs, crypto, { beforeMaskedInput: [0, 1, 2, 3] });
      assert.equal(result.count, 6);
      assertSumMatches(result, inputs, params);
    });

    test('SecAgg+ on a sparse graph: exact sums, or an abort exactly when a neighbourhood falls below t', async () => {
      const n = 48;
      const k = secAggPlusDegree(n);
      assert.ok(k < n - 1);
      const graph = hararyGraph(n, k, new Rng(7));
      const inputs = makeInputs(n, 32, 8);
      let finished = 0;
      for (const [stage, fraction, seed] of [
        ['beforeShareKeys', 0.1, 1],
        ['beforeMaskedInput', 0.1, 2],
        ['beforeMaskedInput', 0.3, 3],
        ['beforeUnmask', 0.3, 4],
      ] as const) {
        const params = makeParams(crypto, graph, 32);
        const plan = {
          [stage]: Array.from(new Rng(seed).permutation(n).subarray(0, Math.round(fraction * n))),
        };
        if (shouldSucceed(graph, params.threshold, plan)) {
          assertSumMatches(await runSecAgg(params, inputs, crypto, plan), inputs, params);
          finished++;
        } else {
          await assert.rejects(runSecAgg(params, inputs, crypto, plan), failsWith('BELOW_THRESHOLD'));
        }
      }
      assert.ok(finished >= 2, 'most of these plans should finish');
      // A client whose whole neighbourhood vanishes forces an abort.
      const params = makeParams(crypto, graph, 32);
      const plan = { beforeMaskedInput: [...graph.neighbours(0)] };
      assert.equal(shouldSucceed(graph, params.threshold, plan), false);
      await assert.rejects(runSecAgg(params, inputs, crypto, plan), failsWith('BELOW_THRESHOLD'));
    });

    test('a 16-bit modulus works end to end', async () => {
      const params = makeParams(crypto, completeGraph(6), 40, 16);
      const inputs = makeInputs(6, 40, 9);
      const result = await runSecAgg(params, inputs, crypto, { beforeMaskedInput: [2] });
      for (const w of result.encodedSum) assert.ok(w < 2 ** 16);
      assertSumMatches(result, inputs, params);
    });
  });
}

/** Drives a complete-graph run up to the unmask request, for the adversarial tests below. */
async function upToUnmask(crypto: CryptoProvider, n: number, dropBeforeMasked: readonly number[] = []) {
  const params = makeParams(crypto, completeGraph(n), 8);
  const inputs = makeInputs(n, 8, 10);
  const clients = Array.from({ length: n }, (_, i) => new SecAggClient(i, params, crypto));
  const server = new SecAggServer(params, crypto);
  for (const c of clients) server.receiveAdvertise(await c.advertise());
  for (const b of server.closeAdvertise())
    server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
  const forwards = server.closeShares();
  for (const f of forwards)
    if (!dropBeforeMasked.includes(f.to))
      server.receiveMasked(await (clients[f.to] as SecAggClient).maskInput(f, inputs[f.to] as Float32Array));
  const requests = server.closeMasked();
  return { params, inputs, clients, server, forwards, requests };
}

async function upToMasking(crypto: CryptoProvider, n: number) {
  const params = makeParams(crypto, completeGraph(n), 8);
  const inputs = makeInputs(n, 8, 11);
  const clients = Array.from({ length: n }, (_, i) => new SecAggClient(i, params, crypto));
  const server = new SecAggServer(params, crypto);
  const adverts = [];
  for (const c of clients) {
    const a = await c.advertise();
    adverts.push(a);
    server.receiveAdvertise(a);
  }
  const broadcasts = server.closeAdvertise();
  const shareMsgs = [];
  for (const b of broadcasts) {
    const s = await (clients[b.to] as SecAggClient).shareKeys(b);
    shareMsgs.push(s);
    server.receiveShares(s);
  }
  return { params, inputs, clients, server, adverts, broadcasts, shareMsgs, forwards: server.closeShares() };
}

describe('protocol rules an honest client and server enforce', () => {
  const crypto = providers[0] as CryptoProvider;

  test('a request for both shares of one client is refused; the honest answer still works after', async () => {
    const { clients, requests, server } = await upToUnmask(crypto, 7, [3]);
    const req = requests[0] as (typeof requests)[number];
    const client = clients[req.to] as SecAggClient;
    // Ask client 0 for the self-mask share AND the key share of survivor 1.
    await assert.rejects(
      client.unmask({ ...req, dropped: [...req.dropped, 1] }),
      failsWith('BOTH_SHARES_REQUESTED'),
    );
    // Also for dropped client 3 as a survivor.
    await assert.rejects(
      client.unmask({ ...req, survivors: [...req.survivors, 3] }),
      failsWith('BOTH_SHARES_REQUESTED'),
    );
    assert.equal(client.phase, 'masked');
    for (const r of requests) server.receiveUnmask(await (clients[r.to] as SecAggClient).unmask(r));
    // One answer per client: a second request (e.g. with the other partition) is refused.
    await assert.rejects(
      client.unmask({
        ...req,
        survivors: req.survivors.filter((v) => v !== 1),
        dropped: [...req.dropped, 1],
      }),
      failsWith('INVALID_TRANSITION'),
    );
    const result = await server.finish();
    assert.equal(result.count, 6);
  });

  test('unmask requests with too few survivors, unknown clients or without the client itself are refused', async () => {
    const { clients, requests } = await upToUnmask(crypto, 7);
    const req = requests[0] as (typeof requests)[number];
    const client = clients[req.to] as SecAggClient;
    await assert.rejects(
      client.unmask({ ...req, survivors: req.survivors.slice(0, 3) }),
      failsWith('BELOW_THRESHOLD'),
    );
    await assert.rejects(
      client.unmask({ ...req, survivors: [...req.survivors, 99] }),
      failsWith('INVALID_MESSAGE'),
    );
    await assert.rejects(
      client.unmask({ ...req, survivors: req.survivors.filter((v) => v !== req.to), dropped: [req.to] }),
      failsWith('INVALID_MESSAGE'),
    );
    await assert.rejects(client.unmask({ ...req, to: 5 }), failsWith('REPLAYED_MESSAGE'));
    assert.equal(client.phase, 'masked');
  });

  test('a tampered share fails GCM authentication and changes nothing', async () => {
    const { clients, forwards, inputs } = await upToMasking(crypto, 6);
    const f = forwards[2] as (typeof forwards)[number];
    const victim = clients[f.to] as SecAggClient;
    const first = f.shares[0] as (typeof f.shares)[number];
    const flipped = first.ciphertext.slice();
    flipped[5] = (flipped[5] as number) ^ 0x01;
    const tampered = { ...f, shares: [{ ...first, ciphertext: flipped }, ...f.shares.slice(1)] };
    await assert.rejects(victim.maskInput(tampered, inputs[f.to] as Float32Array), failsWith('AUTH_FAILED'));
    assert.equal(victim.phase, 'shared');
    // A share relabelled as coming from another client also fails: the AAD binds the sender.
    const relabelled = {
      ...f,
      shares: [{ ...first, from: (f.shares[1] as typeof first).from }, ...f.shares.slice(2)],
    };
    await assert.rejects(
      victim.maskInput(relabelled, inputs[f.to] as Float32Array),
      failsWith('AUTH_FAILED'),
    );
    // A share addressed to someone else, re-addressed to the victim, fails too.
    const other = forwards[3] as (typeof forwards)[number];
    const stolen = other.shares.find((s) => s.from !== f.to) as typeof first;
    const redirected = {
      ...f,
      shares: [{ ...stolen, to: f.to }, ...f.shares.filter((s) => s.from !== stolen.from)],
    };
    await assert.rejects(
      victim.maskInput(redirected, inputs[f.to] as Float32Array),
      failsWith('AUTH_FAILED'),
    );
    // The untouched message still works.
    await victim.maskInput(f, inputs[f.to] as Float32Array);
    assert.equal(victim.phase, 'masked');
  });

  test('shares replayed from another session are rejected', async () => {
    const a = await upToMasking(crypto, 5);
    const b = await upToMasking(crypto, 5);
    const fa = a.forwards[1] as (typeof a.forwards)[number];
    const fb = b.forwards[1] as (typeof b.forwards)[number];
    const client = b.clients[fb.to] as SecAggClient;
    // Session A's whole message: wrong session id.
    await assert.rejects(client.maskInput(fa, b.inputs[1] as Float32Array), failsWith('REPLAYED_MESSAGE'));
    // Session A's ciphertexts under session B's header: keys and AAD differ, so GCM fails.
    await assert.rejects(
      client.maskInput({ ...fb, shares: fa.shares }, b.inputs[1] as Float32Array),
      failsWith('AUTH_FAILED'),
    );
    // A share delivered twice.
    await assert.rejects(
      client.maskInput(
        { ...fb, shares: [...fb.shares, fb.shares[0] as (typeof fb.shares)[number]] },
        b.inputs[1] as Float32Array,
      ),
      failsWith('REPLAYED_MESSAGE'),
    );
  });

  test('the server rejects replayed, foreign, malformed and out-of-order messages', async () => {
    const { params, server, adverts, shareMsgs, clients, forwards, inputs } = await upToMasking(crypto, 5);
    const advert = adverts[0] as (typeof adverts)[number];
    assert.throws(() => server.receiveAdvertise(advert), failsWith('INVALID_TRANSITION'));
    assert.throws(
      () => server.receiveShares(shareMsgs[0] as (typeof shareMsgs)[number]),
      failsWith('INVALID_TRANSITION'),
    );
    const masked = await (clients[0] as SecAggClient).maskInput(
      forwards[0] as (typeof forwards)[number],
      inputs[0] as Float32Array,
    );
    server.receiveMasked(masked);
    assert.throws(() => server.receiveMasked(masked), failsWith('REPLAYED_MESSAGE'));
    assert.throws(
      () => server.receiveMasked({ ...masked, from: 1, session: new Uint8Array(16) }),
      failsWith('REPLAYED_MESSAGE'),
    );
    assert.throws(
      () => server.receiveMasked({ ...masked, from: 1, masked: new Uint32Array(3) }),
      failsWith('INVALID_MESSAGE'),
    );
    assert.throws(() => server.receiveMasked({ ...masked, from: 9 }), failsWith('INVALID_MESSAGE'));
    await assert.rejects(server.finish(), failsWith('INVALID_TRANSITION'));
    // A fresh server: duplicate advertisement and shares naming non-holders.
    const fresh = new SecAggServer(params, crypto);
    fresh.receiveAdvertise(advert);
    assert.throws(() => fresh.receiveAdvertise(advert), failsWith('REPLAYED_MESSAGE'));
    assert.throws(
      () => fresh.receiveAdvertise({ ...advert, id: 1, maskingKey: new Uint8Array(5) }),
      failsWith('INVALID_MESSAGE'),
    );
    for (const a of adverts.slice(1)) fresh.receiveAdvertise(a);
    fresh.closeAdvertise();
    const s0 = shareMsgs[0] as (typeof shareMsgs)[number];
    assert.throws(
      () => fresh.receiveShares({ ...s0, shares: s0.shares.slice(1) }),
      failsWith('INVALID_MESSAGE'),
    );
    fresh.receiveShares(s0);
    assert.throws(() => fresh.receiveShares(s0), failsWith('REPLAYED_MESSAGE'));
  });

  test('clients reject broadcasts that swap or reuse keys, and out-of-order calls', async () => {
    const params = makeParams(crypto, completeGraph(4), 4);
    const clients = Array.from({ length: 4 }, (_, i) => new SecAggClient(i, params, crypto));
    const server = new SecAggServer(params, crypto);
    await assert.rejects(
      clients[0]?.unmask({
        session: params.sessionId,
        to: 0,
        survivors: [],
        dropped: [],
      }) as Promise<unknown>,
      failsWith('INVALID_TRANSITION'),
    );
    for (const c of clients) server.receiveAdvertise(await c.advertise());
    const [b0] = server.closeAdvertise() as [ReturnType<SecAggServer['closeAdvertise']>[number]];
    const c0 = clients[0] as SecAggClient;
    const me = b0.peers.find((p) => p.id === 0) as (typeof b0.peers)[number];
    const other = b0.peers.find((p) => p.id === 1) as (typeof b0.peers)[number];
    // The server substitutes its own key for client 0's: client 0 notices.
    const substituted = b0.peers.map((p) => (p.id === 0 ? { ...p, maskingKey: other.maskingKey } : p));
    await assert.rejects(c0.shareKeys({ ...b0, peers: substituted }), failsWith('INVALID_MESSAGE'));
    // Client 2 shown with client 1's key (a server trying to link two identities).
    const reused = b0.peers.map((p) => (p.id === 2 ? { ...p, encryptionKey: other.encryptionKey } : p));
    await assert.rejects(c0.shareKeys({ ...b0, peers: reused }), failsWith('INVALID_MESSAGE'));
    await assert.rejects(c0.shareKeys({ ...b0, peers: [me, other] }), failsWith('BELOW_THRESHOLD'));
    assert.equal(c0.phase, 'advertised');
    await c0.shareKeys(b0);
    await assert.rejects(c0.shareKeys(b0), failsWith('INVALID_TRANSITION'));
  });

  test('a non-finite update is refused before anything is sent', async () => {
    const { clients, forwards } = await upToMasking(crypto, 5);
    const bad = new Float32Array(8);
    bad[3] = Number.NaN;
    await assert.rejects(
      (clients[0] as SecAggClient).maskInput(forwards[0] as (typeof forwards)[number], bad),
      NonFiniteError,
    );
    assert.equal((clients[0] as SecAggClient).phase, 'shared');
  });

  test('a corrupted revealed share is caught when reconstructing', async () => {
    const { clients, requests, server } = await upToUnmask(crypto, 7, [6]);
    for (const r of requests) {
      const resp = await (clients[r.to] as SecAggClient).unmask(r);
      if (r.to !== 0) {
        server.receiveUnmask(resp);
        continue;
      }
      // Client 0 lies about its share of dropped client 6's key.
      const lie = resp.keyShares.map((s) => ({ ...s, value: s.value.map((b, i) => (i === 32 ? b ^ 1 : b)) }));
      server.receiveUnmask({ ...resp, keyShares: lie });
    }
    await assert.rejects(server.finish(), failsWith('INVALID_SHARE'));
    assert.equal(server.phase, 'aborted');
  });

  test("the server's view: masked inputs of identical updates look uniform and differ", async () => {
    const n = 4;
    const dim = 4096;
    const params = makeParams(crypto, completeGraph(n), dim);
    const clients = Array.from({ length: n }, (_, i) => new SecAggClient(i, params, crypto));
    const server = new SecAggServer(params, crypto);
    for (const c of clients) server.receiveAdvertise(await c.advertise());
    for (const b of server.closeAdvertise())
      server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
    const zero = new Float32Array(dim); // every client encodes the same constant word
    const masked = [];
    for (const f of server.closeShares())
      masked.push((await (clients[f.to] as SecAggClient).maskInput(f, zero)).masked);
    for (const y of masked) {
      const counts = new Array<number>(16).fill(0);
      for (const w of y) counts[w >>> 28] = (counts[w >>> 28] as number) + 1;
      const expected = dim / 16;
      const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
      assert.ok(chi2 < 37.7, `top nibble chi2 = ${chi2}`); // 15 dof, p = 0.001
    }
    assert.notDeepEqual(masked[0], masked[1]);
  });
});

describe('every out-of-order call is an INVALID_TRANSITION and changes nothing', () => {
  const crypto = providers[0] as CryptoProvider;

  test('client methods outside their phase', async () => {
    const { clients, forwards, requests, inputs } = await upToUnmask(crypto, 5);
    const fresh = new SecAggClient(0, makeParams(crypto, completeGraph(5), 8), crypto);
    const f = forwards[0] as (typeof forwards)[number];
    const r = requests[0] as (typeof requests)[number];
    const x = inputs[0] as Float32Array;
    const broadcast = { session: f.session, to: 0, peers: [] };
    const calls: [SecAggClient, () => Promise<unknown>][] = [
      [fresh, () => fresh.shareKeys(broadcast)],
      [fresh, () => fresh.maskInput(f, x)],
      [fresh, () => fresh.unmask(r)],
      [clients[0] as SecAggClient, () => (clients[0] as SecAggClient).advertise()],
      [clients[0] as SecAggClient, () => (clients[0] as SecAggClient).shareKeys(broadcast)],
      [clients[0] as SecAggClient, () => (clients[0] as SecAggClient).maskInput(f, x)],
    ];
    for (const [client, call] of calls) {
      const before = client.phase;
      await assert.rejects(call(), failsWith('INVALID_TRANSITION'));
      assert.equal(client.phase, before);
    }
  });

  test('server methods outside their phase', async () => {
    const { server, requests } = await upToUnmask(crypto, 5);
    const params = makeParams(crypto, completeGraph(5), 8);
    const fresh = new SecAggServer(params, crypto);
    const anyMasked = { session: params.sessionId, from: 0, masked: new Uint32Array(8) };
    const anyShares = { session: params.sessionId, from: 0, shares: [] };
    const anyUnmask = { session: params.sessionId, from: 0, selfMaskShares: [], keyShares: [] };
    const sync: [SecAggServer, () => unknown][] = [
      [fresh, () => fresh.closeShares()],
      [fresh, () => fresh.closeMasked()],
      [fresh, () => fresh.receiveShares(anyShares)],
      [fresh, () => fresh.receiveMasked(anyMasked)],
      [fresh, () => fresh.receiveUnmask(anyUnmask)],
      [server, () => server.closeAdvertise()],
      [server, () => server.closeShares()],
      [server, () => server.closeMasked()],
      [
        server,
        () =>
          server.receiveMasked({ ...anyMasked, session: (requests[0] as (typeof requests)[number]).session }),
      ],
    ];
    for (const [s, call] of sync) {
      const before = s.phase;
      assert.throws(call, failsWith('INVALID_TRANSITION'));
      assert.equal(s.phase, before);
    }
    await assert.rejects(fresh.finish(), failsWith('INVALID_TRANSITION'));
    await assert.rejects(fresh.computeSum(), failsWith('INVALID_TRANSITION'));
    assert.equal(fresh.phase, 'advertise');
  });
});

test("the server's view never holds both secrets of any client", async () => {
  const crypto = providers[0] as CryptoProvider;
  const { clients, requests, server } = await upToUnmask(crypto, 9, [2, 5]);
  const revealedSelf = new Map<number, number>();
  const revealedKey = new Map<number, number>();
  const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const r of requests) {
    const resp = await (clients[r.to] as SecAggClient).unmask(r);
    for (const s of resp.selfMaskShares) bump(revealedSelf, s.of);
    for (const s of resp.keyShares) bump(revealedKey, s.of);
    server.receiveUnmask(resp);
  }
  // Survivors: self-mask shares only (so their pairwise masks stay); dropped: key shares only.
  for (const u of [0, 1, 3, 4, 6, 7, 8]) {
    assert.equal(revealedKey.get(u), undefined);
    assert.equal(revealedSelf.get(u), 7);
  }
  for (const v of [2, 5]) {
    assert.equal(revealedSelf.get(v), undefined);
    assert.equal(revealedKey.get(v), 7);
  }
  const result = await server.finish();
  assert.deepEqual(result.dropped, [2, 5]);
});
