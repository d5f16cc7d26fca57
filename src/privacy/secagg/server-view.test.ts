/**
 * Privacy of the server's view (issue 3, "Done when"): everything the server object receives in a
 * run is recorded, and we check that it holds only masked vectors and the sum.
 *
 * - Every masked vector passes uniformity tests mod 2^32 and is uncorrelated with its client's input,
 *   while the same tests reject the unmasked encodings (so they have the power to see an input).
 * - The strongest use of the view against a survivor u — reconstruct b_u from the revealed shares and
 *   strip the self mask — still leaves a uniform vector: the pairwise masks need s_u^SK, and no key
 *   share of a survivor is in the view. A dropped client's key is recoverable, but its masked input
 *   was never received.
 * - No client secret (b_u, s_u^SK, c_u^SK) appears anywhere in the bytes the server received.
 * - The server learns the sum exactly: its fixed-point result equals Σ encode(x_u) mod 2^32 over
 *   the survivors, computed here independently.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SecAggClient } from './client.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { encodeFixedPoint, fixedPointFor } from './fixedpoint.ts';
import { completeGraph, majorityThreshold } from './graph.ts';
import { selfMaskKey } from './keys.ts';
import type {
  AdvertiseKeys,
  MaskedInput,
  SecAggParams,
  SecAggResult,
  ShareKeys,
  UnmaskResponse,
} from './messages.ts';
import { SecAggServer } from './server.ts';
import { bytesToBigInt, combineShares, type Share } from './shamir.ts';

const N = 8;
const DIM = 4096;
const DROPPED = 6;

/** A server that keeps a copy of every message it is handed (its complete view). */
class RecordingServer extends SecAggServer {
  readonly advertised: AdvertiseKeys[] = [];
  readonly shares: ShareKeys[] = [];
  readonly masked: MaskedInput[] = [];
  readonly unmasked: UnmaskResponse[] = [];
  override receiveAdvertise(msg: AdvertiseKeys): void {
    this.advertised.push(structuredClone(msg));
    super.receiveAdvertise(msg);
  }
  override receiveShares(msg: ShareKeys): void {
    this.shares.push(structuredClone(msg));
    super.receiveShares(msg);
  }
  override receiveMasked(msg: MaskedInput): void {
    this.masked.push(structuredClone(msg));
    super.receiveMasked(msg);
  }
  override receiveUnmask(msg: UnmaskResponse): void {
    this.unmasked.push(structuredClone(msg));
    super.receiveUnmask(msg);
  }
  /** Every byte the server received, concatenated. */
  allBytes(): Buffer {
    const parts: Uint8Array[] = [];
    const add = (b: ArrayBufferView) => parts.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    for (const m of this.advertised) [m.session, m.encryptionKey, m.maskingKey].forEach(add);
    for (const m of this.shares) for (const s of m.shares) [s.nonce, s.ciphertext].forEach(add);
    for (const m of this.masked) add(m.masked);
    for (const m of this.unmasked) for (const s of [...m.selfMaskShares, ...m.keyShares]) add(s.value);
    return Buffer.concat(parts);
  }
}

/** Strongly structured inputs (smooth curves, one constant), the easiest case for a leak to show. */
function inputs(): Float32Array[] {
  return Array.from({ length: N }, (_, u) =>
    Float32Array.from({ length: DIM }, (_, i) => (u === 0 ? 0.25 : 0.8 * Math.sin(i / (20 + 5 * u) + u))),
  );
}

/** χ² of the top 4 bits and of the low 4 bits of each word against the uniform distribution. */
function uniformityChi2(words: Uint32Array): { high: number; low: number } {
  const high = new Array<number>(16).fill(0);
  const low = new Array<number>(16).fill(0);
  for (const w of words) {
    high[w >>> 28] = (high[w >>> 28] as number) + 1;
    low[w & 15] = (low[w & 15] as number) + 1;
  }
  const e = words.length / 16;
  const chi = (c: number[]) => c.reduce((s, x) => s + (x - e) ** 2 / e, 0);
  return { high: chi(high), low: chi(low) };
}
/** 15 degrees of freedom: P(χ² > 55) < 1e-6. */
const CHI2_LIMIT = 55;

function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    sa += a[i] as number;
    sb += b[i] as number;
  }
  const ma = sa / n;
  const mb = sb / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = (a[i] as number) - ma;
    const db = (b[i] as number) - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa === 0 || sbb === 0 ? 0 : sab / Math.sqrt(saa * sbb);
}
/** Five standard errors of a correlation between independent vectors of DIM elements. */
const CORR_LIMIT = 5 / Math.sqrt(DIM);

interface ClientSecrets {
  readonly selfMaskSeed: Uint8Array;
  readonly maskingPair: { readonly privateKey: Uint8Array };
  readonly encryptionPair: { readonly privateKey: Uint8Array };
}

test("the server's view holds only masked vectors and the sum", async () => {
  const crypto = new NodeCryptoProvider();
  const graph = completeGraph(N);
  const params: SecAggParams = {
    sessionId: crypto.randomBytes(16),
    graph,
    threshold: majorityThreshold(N),
    dimension: DIM,
    encoding: fixedPointFor(1, N),
  };
  const x = inputs();
  const clients = Array.from({ length: N }, (_, i) => new SecAggClient(i, params, crypto));
  const server = new RecordingServer(params, crypto);
  for (const c of clients) server.receiveAdvertise(await c.advertise());
  for (const b of server.closeAdvertise())
    server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
  for (const f of server.closeShares())
    if (f.to !== DROPPED)
      server.receiveMasked(await (clients[f.to] as SecAggClient).maskInput(f, x[f.to] as Float32Array));
  for (const r of server.closeMasked()) server.receiveUnmask(await (clients[r.to] as SecAggClient).unmask(r));
  const result: SecAggResult = await server.finish();

  const survivors = [...Array(N).keys()].filter((u) => u !== DROPPED);
  assert.deepEqual(result.survivors, survivors);
  assert.deepEqual(
    server.masked.map((m) => m.from).sort((a, b) => a - b),
    survivors,
    'masked inputs only from survivors',
  );
  const encoded = x.map((v) => encodeFixedPoint(v, params.encoding));

  // 1. Each masked vector looks uniform and is uncorrelated with its input; its encoding is not.
  for (const m of server.masked) {
    const own = encoded[m.from] as Uint32Array;
    const chi = uniformityChi2(m.masked);
    assert.ok(chi.high < CHI2_LIMIT && chi.low < CHI2_LIMIT, `client ${m.from}: χ² ${JSON.stringify(chi)}`);
    const r = correlation(m.masked, own);
    assert.ok(Math.abs(r) < CORR_LIMIT, `client ${m.from}: correlation with its input ${r}`);
    // Control: the plain encodings fail the uniformity test (the test can see an input).
    assert.ok(uniformityChi2(own).high > 10 * CHI2_LIMIT, `client ${m.from}: the encoding looks uniform`);
  }

  // 2. Best use of the view against a survivor: rebuild b_u from revealed shares, strip the self mask.
  const keySharesOf = new Set(server.unmasked.flatMap((r) => r.keyShares.map((s) => s.of)));
  for (const u of survivors) assert.ok(!keySharesOf.has(u), `a key share of survivor ${u} was revealed`);
  assert.deepEqual([...keySharesOf], [DROPPED]);
  for (const u of survivors) {
    const shares: Share[] = server.unmasked.flatMap((r) =>
      r.selfMaskShares.filter((s) => s.of === u).map((s) => ({ x: r.from + 1, y: bytesToBigInt(s.value) })),
    );
    const b = combineShares(shares, params.threshold);
    const selfMask = await crypto.expandMask(await selfMaskKey(crypto, params.sessionId, b), DIM);
    const y = (server.masked.find((m) => m.from === u) as MaskedInput).masked;
    const stripped = Uint32Array.from(y, (w, i) => (w - (selfMask[i] as number)) >>> 0);
    // The reconstruction is right (the seed matches the client's) and yet the result stays masked.
    assert.deepEqual(b, (clients[u] as unknown as ClientSecrets).selfMaskSeed);
    const chi = uniformityChi2(stripped);
    assert.ok(
      chi.high < CHI2_LIMIT && chi.low < CHI2_LIMIT,
      `survivor ${u} minus self mask: χ² ${JSON.stringify(chi)}`,
    );
    assert.ok(Math.abs(correlation(stripped, encoded[u] as Uint32Array)) < CORR_LIMIT);
  }

  // 3. No client secret appears in anything the server received.
  const view = server.allBytes();
  assert.ok(view.length > (N - 1) * DIM * 4);
  for (const [u, c] of clients.entries()) {
    const s = c as unknown as ClientSecrets;
    for (const secret of [s.selfMaskSeed, s.maskingPair.privateKey, s.encryptionPair.privateKey])
      assert.equal(view.indexOf(Buffer.from(secret)), -1, `a secret of client ${u} is in the server's view`);
  }

  // 4. The sum is exact in the fixed-point domain.
  const want = new Uint32Array(DIM);
  for (const u of survivors)
    for (let i = 0; i < DIM; i++)
      want[i] = ((want[i] as number) + ((encoded[u] as Uint32Array)[i] as number)) >>> 0;
  assert.deepEqual(result.encodedSum, want);
  assert.equal(result.count, survivors.length);
});
