/**
 * Secure aggregation costs at 1,000,000 floats.
 *
 * secagg.client_mask_1m: one client with 20 neighbours computes its masked input: decrypting its 20
 * shares, 20 pairwise key agreements, fixed-point encoding and adding 21 AES-CTR masks (20 pairwise +
 * 1 self). Its group is the complete graph on 21 clients: the client's work (20 neighbours, 21
 * holders, t = 11) is exactly that of a SecAgg+ client with k = 20 in a group of 100, and setting up
 * a fresh group per repetition is five times cheaper, which buys more repetitions. Baseline:
 * expanding 20 AES-CTR masks of 4 MB with node:crypto, the cryptographic floor named in issue 3.
 * The ratio is the issue's own figure, ours / floor (LOWER is better, goal ≤ 1.5): the median of
 * the per-pair ratios of 15 interleaved pairs after 3 warm-up pairs, so a slow phase of a shared
 * machine inflates both halves of a pair rather than one side of the comparison.
 *
 * secagg.server_unmask_1m: the server of a SecAgg+ group of 100 (k = 20) with 10% of clients dropped
 * after sharing keys reconstructs the survivors' self-mask seeds and the dropped clients' keys from
 * Shamir shares and removes every mask from the sum. Baseline: expanding just the masks it must
 * regenerate (survivors' self masks plus the dropped clients' pairwise masks with surviving
 * neighbours); ratio = baseline / ours as usual (no goal in the issue).
 *
 * Each client timing needs a fresh client (a client masks once), so rounds 0–1 are replayed untimed
 * before every repetition; ours and the baseline alternate so machine noise hits both.
 */
import { createCipheriv } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Rng } from '../src/core/rng.ts';
import { SecAggClient } from '../src/privacy/secagg/client.ts';
import type { CryptoProvider } from '../src/privacy/secagg/crypto.ts';
import { NodeCryptoProvider } from '../src/privacy/secagg/crypto-node.ts';
import { WebCryptoProvider } from '../src/privacy/secagg/crypto-web.ts';
import { fixedPointFor } from '../src/privacy/secagg/fixedpoint.ts';
import { completeGraph, hararyGraph, majorityThreshold } from '../src/privacy/secagg/graph.ts';
import type { ForwardedShares, SecAggParams } from '../src/privacy/secagg/messages.ts';
import { SecAggServer } from '../src/privacy/secagg/server.ts';
import type { BenchEntry } from './harness.ts';

// A full collection before each timed pair, so garbage from the untimed setup (a hundred clients'
// keys and shares) is not collected inside the timed region of whichever runs first.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const DIM = 1_000_000;
const GROUP = 100;
const DEGREE = 20;
const crypto = new NodeCryptoProvider();

function params(seed: number): SecAggParams {
  return {
    sessionId: crypto.randomBytes(16),
    graph: hararyGraph(GROUP, DEGREE, new Rng(seed)),
    threshold: majorityThreshold(DEGREE + 1),
    dimension: DIM,
    encoding: fixedPointFor(1, GROUP),
  };
}

/** Rounds 0 and 1 for the whole group; returns the clients, the server and the forwarded shares. */
async function shareRounds(p: SecAggParams, provider: CryptoProvider = crypto) {
  const clients = Array.from({ length: p.graph.size }, (_, i) => new SecAggClient(i, p, provider));
  const server = new SecAggServer(p, provider);
  for (const c of clients) server.receiveAdvertise(await c.advertise());
  for (const b of server.closeAdvertise())
    server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
  return { clients, server, forwards: server.closeShares() };
}

const zeros = Buffer.alloc(DIM * 4);
function expandMasks(count: number): void {
  for (let k = 0; k < count; k++)
    createCipheriv('aes-128-ctr', crypto.randomBytes(16), Buffer.alloc(16)).update(zeros);
}

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
/** Median of the fastest half, as harness.timeMs. */
const robust = (t: number[]) => [...t].sort((a, b) => a - b)[Math.floor((t.length - 1) / 4)] as number;

function makeUpdate(seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: DIM }, () => rng.uniform(-1, 1));
}

const median = (t: readonly number[]) => {
  const s = [...t].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const CLIENT_WARMUP = 3;
const CLIENT_PAIRS = 15;

export async function clientMask(): Promise<BenchEntry> {
  const update = makeUpdate(1);
  const ours: number[] = [];
  const floor: number[] = [];
  const ratios: number[] = [];
  for (let rep = 0; rep < CLIENT_WARMUP + CLIENT_PAIRS; rep++) {
    // A fresh group per repetition; only one client masks, as on a real device.
    const p: SecAggParams = {
      sessionId: crypto.randomBytes(16),
      graph: completeGraph(DEGREE + 1),
      threshold: majorityThreshold(DEGREE + 1),
      dimension: DIM,
      encoding: fixedPointFor(1, GROUP),
    };
    const { clients, forwards } = await shareRounds(p);
    const f = forwards[0] as ForwardedShares;
    if (f.shares.length !== DEGREE) throw new Error(`client 0 has ${f.shares.length} neighbours`);
    collectGarbage();
    // Alternate which side goes first, so neither always runs right after the collection.
    const oursFirst = rep % 2 === 0;
    let o = 0;
    let b = 0;
    if (!oursFirst) {
      const s = process.hrtime.bigint();
      expandMasks(DEGREE);
      b = ms(s);
    }
    let s = process.hrtime.bigint();
    await (clients[0] as SecAggClient).maskInput(f, update);
    o = ms(s);
    if (oursFirst) {
      s = process.hrtime.bigint();
      expandMasks(DEGREE);
      b = ms(s);
    }
    if (rep >= CLIENT_WARMUP) {
      ours.push(o);
      floor.push(b);
      ratios.push(o / b);
    }
  }
  const o = median(ours);
  const b = median(floor);
  const sorted = [...ratios].sort((x, y) => x - y);
  const q = (f: number) => (sorted[Math.round(f * (sorted.length - 1))] as number).toFixed(2);
  return {
    name: 'secagg.client_mask_1m',
    value: o,
    unit: 'ms',
    baseline: b,
    // Issue 3 defines this entry as ours / floor (lower is better).
    ratio: median(ratios),
    goal: '≤ 1.5 (ratio = client masking / 20 AES-CTR expansions)',
    note: `ratio = client time / AES-CTR floor (lower is better), median of ${CLIENT_PAIRS} interleaved pairs (quartiles ${q(0.25)}–${q(0.75)}); one client, 20 neighbours, 1M floats, node:crypto; baseline = expanding 20 AES-128-CTR masks of 4 MB`,
  };
}

async function serverUnmask(): Promise<BenchEntry> {
  const p = params(100);
  const { clients, server, forwards } = await shareRounds(p);
  const dropped = new Set(Array.from(new Rng(101).permutation(GROUP).subarray(0, GROUP / 10)));
  // Ten distinct updates keep setup memory modest; clients cycle through them.
  const updates = Array.from({ length: 10 }, (_, k) => makeUpdate(200 + k));
  for (const f of forwards)
    if (!dropped.has(f.to))
      server.receiveMasked(
        await (clients[f.to] as SecAggClient).maskInput(f, updates[f.to % 10] as Float32Array),
      );
  for (const r of server.closeMasked()) server.receiveUnmask(await (clients[r.to] as SecAggClient).unmask(r));
  const masks = server.masksToRegenerate();

  // Check once that the work timed is the real thing: the decoded sum matches the plain one.
  const check = await server.computeSum();
  for (const i of [0, 1, DIM - 1]) {
    let want = 0;
    for (const u of check.survivors) want += (updates[u % 10] as Float32Array)[i] as number;
    if (Math.abs(want - (check.sum[i] as number)) > 1e-4) throw new Error(`unmasked sum is wrong at ${i}`);
  }

  const ours: number[] = [];
  const floor: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    collectGarbage();
    let s = process.hrtime.bigint();
    await server.computeSum();
    if (rep >= 1) ours.push(ms(s));
    s = process.hrtime.bigint();
    expandMasks(masks);
    if (rep >= 1) floor.push(ms(s));
  }
  const o = robust(ours);
  const b = robust(floor);
  return {
    name: 'secagg.server_unmask_1m',
    value: o,
    unit: 'ms',
    baseline: b,
    ratio: b / o,
    note: `SecAgg+ group of 100 (k = 20), 10 dropped after sharing keys, 1M floats; baseline = expanding the ${masks} AES-CTR masks the server must regenerate`,
  };
}

/**
 * The browser-side path: the same client on WebCrypto (as run by Node's crypto.subtle), whole masks
 * expanded by subtle.encrypt. Its group is the complete graph on 21 clients: the client's work (20
 * neighbours, 21 holders, t = 11) is the same as in SecAgg+ and the setup is five times cheaper.
 * Baseline: 20 AES-CTR expansions of 4 MB through subtle.encrypt. Informational, no goal.
 */
async function clientMaskWebCrypto(): Promise<BenchEntry> {
  const web: CryptoProvider = new WebCryptoProvider();
  const update = makeUpdate(2);
  const p = (): SecAggParams => ({
    sessionId: web.randomBytes(16),
    graph: completeGraph(DEGREE + 1),
    threshold: majorityThreshold(DEGREE + 1),
    dimension: DIM,
    encoding: fixedPointFor(1, DEGREE + 1),
  });
  const zeroBlock = new Uint8Array(DIM * 4);
  const expandWeb = async () => {
    for (let k = 0; k < DEGREE; k++) {
      const key = await globalThis.crypto.subtle.importKey(
        'raw',
        web.randomBytes(16) as Uint8Array<ArrayBuffer>,
        'AES-CTR',
        false,
        ['encrypt'],
      );
      await globalThis.crypto.subtle.encrypt(
        { name: 'AES-CTR', counter: new Uint8Array(16), length: 64 },
        key,
        zeroBlock,
      );
    }
  };
  const ours: number[] = [];
  const floor: number[] = [];
  for (let rep = 0; rep < 7; rep++) {
    const { clients, forwards } = await shareRounds(p(), web);
    const f = forwards[0] as ForwardedShares;
    collectGarbage();
    let s = process.hrtime.bigint();
    await (clients[0] as SecAggClient).maskInput(f, update);
    if (rep >= 2) ours.push(ms(s));
    s = process.hrtime.bigint();
    await expandWeb();
    if (rep >= 2) floor.push(ms(s));
  }
  const o = robust(ours);
  const b = robust(floor);
  return {
    name: 'secagg.client_mask_1m_webcrypto',
    value: o,
    unit: 'ms',
    baseline: b,
    ratio: b / o,
    note: 'the same client on WebCrypto (crypto.subtle in Node); baseline = 20 subtle AES-CTR expansions of 4 MB',
  };
}

export async function run(): Promise<BenchEntry[]> {
  return [await clientMask(), await clientMaskWebCrypto(), await serverUnmask()];
}
