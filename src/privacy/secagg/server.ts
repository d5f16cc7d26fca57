/**
 * The server side of SecAgg / SecAgg+ as a state machine. For each round it collects messages
 * (`receive*`) and then closes the round (`close*`), which fixes the set of live clients and produces
 * the next round's messages:
 *
 *   advertise --closeAdvertise--> shares --closeShares--> masked --closeMasked--> unmask --finish--> done
 *
 * Live sets follow Bonawitz et al.: U1 advertised keys, U2 shared them, U3 sent masked inputs, U5
 * answered the unmask request. Any client whose secrets could no longer be recovered from t of its
 * live holders makes the server abort (phase 'aborted', SecAggError BELOW_THRESHOLD). A rejected
 * message changes nothing.
 */
import { accumulateWords, bytesEqual, type CryptoProvider, type MaskTerm, X25519_BYTES } from './crypto.ts';
import { secaggError } from './errors.ts';
import { decodeSum, reduceModulus } from './fixedpoint.ts';
import { BASE_POINT, pairSign, pairwiseMaskKey, selfMaskKey } from './keys.ts';
import {
  type AdvertiseKeys,
  type EncryptedShare,
  type ForwardedShares,
  holdersOf,
  type KeyBroadcast,
  type MaskedInput,
  type PublicKeys,
  type SecAggParams,
  type SecAggResult,
  type ShareKeys,
  type UnmaskRequest,
  type UnmaskResponse,
  validateParams,
} from './messages.ts';
import { bytesToBigInt, combineShares, SHARE_VALUE_BYTES, type Share } from './shamir.ts';

export type ServerPhase = 'advertise' | 'shares' | 'masked' | 'unmask' | 'done' | 'aborted';

export class SecAggServer {
  private readonly params: SecAggParams;
  private readonly crypto: CryptoProvider;
  private readonly holders: readonly (readonly number[])[];
  private state: ServerPhase = 'advertise';
  private readonly keys = new Map<number, PublicKeys>();
  private readonly sharesFrom = new Map<number, readonly EncryptedShare[]>();
  private readonly maskedFrom = new Map<number, Uint32Array>();
  private readonly responses = new Map<number, UnmaskResponse>();
  private u1: ReadonlySet<number> = new Set();
  private u2: ReadonlySet<number> = new Set();
  private u3: ReadonlySet<number> = new Set();
  private requests = new Map<number, UnmaskRequest>();

  constructor(params: SecAggParams, crypto: CryptoProvider) {
    this.params = validateParams(params);
    this.crypto = crypto;
    this.holders = Array.from({ length: params.graph.size }, (_, u) => holdersOf(params.graph, u));
  }

  get phase(): ServerPhase {
    return this.state;
  }

  private expect(phase: ServerPhase, action: string): void {
    if (this.state !== phase)
      throw secaggError('INVALID_TRANSITION', `server cannot ${action} in phase '${this.state}'`);
  }

  private checkSender(
    session: Uint8Array,
    from: number,
    live: ReadonlySet<number> | null,
    what: string,
  ): void {
    if (!bytesEqual(session, this.params.sessionId))
      throw secaggError('REPLAYED_MESSAGE', `${what} belongs to another session`);
    if (!Number.isInteger(from) || from < 0 || from >= this.params.graph.size)
      throw secaggError('INVALID_MESSAGE', `${what} from unknown client ${from}`);
    if (live !== null && !live.has(from))
      throw secaggError('INVALID_MESSAGE', `${what} from ${from}, who is not live in this round`);
  }

  /** Aborts unless every client in `owners` has at least t holders in `live`. */
  private requireHolders(owners: Iterable<number>, live: ReadonlySet<number>, stage: string): void {
    const t = this.params.threshold;
    if (live.size < t) this.abort(`${stage}: ${live.size} clients left, threshold ${t}`);
    for (const u of owners) {
      let n = 0;
      for (const h of this.holders[u] as number[]) if (live.has(h)) n++;
      if (n < t) this.abort(`${stage}: client ${u} has ${n} live holders, threshold ${t}`);
    }
  }

  private abort(message: string): never {
    this.state = 'aborted';
    throw secaggError('BELOW_THRESHOLD', message);
  }

  receiveAdvertise(msg: AdvertiseKeys): void {
    this.expect('advertise', 'accept keys');
    this.checkSender(msg.session, msg.id, null, 'key advertisement');
    if (this.keys.has(msg.id))
      throw secaggError('REPLAYED_MESSAGE', `client ${msg.id} already advertised keys`);
    if (msg.encryptionKey.length !== X25519_BYTES || msg.maskingKey.length !== X25519_BYTES)
      throw secaggError('INVALID_MESSAGE', `client ${msg.id} sent malformed keys`);
    this.keys.set(msg.id, { id: msg.id, encryptionKey: msg.encryptionKey, maskingKey: msg.maskingKey });
  }

  closeAdvertise(): KeyBroadcast[] {
    this.expect('advertise', 'close key advertisement');
    const u1 = new Set(this.keys.keys());
    this.requireHolders(u1, u1, 'after key advertisement');
    this.u1 = u1;
    this.state = 'shares';
    return [...u1]
      .sort((a, b) => a - b)
      .map((u) => ({
        session: this.params.sessionId,
        to: u,
        peers: (this.holders[u] as number[])
          .filter((v) => u1.has(v))
          .map((v) => this.keys.get(v) as PublicKeys),
      }));
  }

  receiveShares(msg: ShareKeys): void {
    this.expect('shares', 'accept shares');
    this.checkSender(msg.session, msg.from, this.u1, 'key shares');
    if (this.sharesFrom.has(msg.from))
      throw secaggError('REPLAYED_MESSAGE', `client ${msg.from} already sent shares`);
    const expected = (this.holders[msg.from] as number[]).filter((v) => v !== msg.from && this.u1.has(v));
    const recipients = new Set(msg.shares.map((s) => s.to));
    if (
      msg.shares.some((s) => s.from !== msg.from) ||
      recipients.size !== msg.shares.length ||
      recipients.size !== expected.length ||
      expected.some((v) => !recipients.has(v))
    )
      throw secaggError(
        'INVALID_MESSAGE',
        `client ${msg.from} must send exactly one share to each live holder`,
      );
    this.sharesFrom.set(msg.from, msg.shares);
  }

  closeShares(): ForwardedShares[] {
    this.expect('shares', 'close key sharing');
    const u2 = new Set(this.sharesFrom.keys());
    this.requireHolders(u2, u2, 'after key sharing');
    this.u2 = u2;
    this.state = 'masked';
    const inbox = new Map<number, EncryptedShare[]>();
    for (const u of u2) inbox.set(u, []);
    for (const shares of this.sharesFrom.values()) for (const s of shares) inbox.get(s.to)?.push(s);
    return [...u2]
      .sort((a, b) => a - b)
      .map((u) => ({
        session: this.params.sessionId,
        to: u,
        shares: inbox.get(u) as EncryptedShare[],
      }));
  }

  receiveMasked(msg: MaskedInput): void {
    this.expect('masked', 'accept masked inputs');
    this.checkSender(msg.session, msg.from, this.u2, 'masked input');
    if (this.maskedFrom.has(msg.from))
      throw secaggError('REPLAYED_MESSAGE', `client ${msg.from} already sent its input`);
    if (msg.masked.length !== this.params.dimension)
      throw secaggError(
        'INVALID_MESSAGE',
        `masked input of ${msg.masked.length} words, expected ${this.params.dimension}`,
      );
    const bits = this.params.encoding.modulusBits;
    if (bits < 32) {
      const limit = 2 ** bits;
      for (let i = 0; i < msg.masked.length; i++)
        if ((msg.masked[i] as number) >= limit)
          throw secaggError('INVALID_MESSAGE', `masked word ${i} is not reduced mod 2^${bits}`);
    }
    this.maskedFrom.set(msg.from, msg.masked);
  }

  closeMasked(): UnmaskRequest[] {
    this.expect('masked', 'close input collection');
    const u3 = new Set(this.maskedFrom.keys());
    // Survivors' self masks need t answering holders; so do the keys of dropped clients.
    this.requireHolders(this.u2, u3, 'after input collection');
    this.u3 = u3;
    this.state = 'unmask';
    const requests = [...u3]
      .sort((a, b) => a - b)
      .map((u) => {
        const mine = (this.holders[u] as number[]).filter((v) => this.u2.has(v));
        return {
          session: this.params.sessionId,
          to: u,
          survivors: mine.filter((v) => u3.has(v)),
          dropped: mine.filter((v) => !u3.has(v)),
        };
      });
    this.requests = new Map(requests.map((r) => [r.to, r]));
    return requests;
  }

  receiveUnmask(msg: UnmaskResponse): void {
    this.expect('unmask', 'accept unmask responses');
    this.checkSender(msg.session, msg.from, this.u3, 'unmask response');
    if (this.responses.has(msg.from))
      throw secaggError('REPLAYED_MESSAGE', `client ${msg.from} already answered`);
    const req = this.requests.get(msg.from) as UnmaskRequest;
    const same = (got: readonly { of: number; value: Uint8Array }[], want: readonly number[]) =>
      got.length === want.length &&
      got.every((s, i) => s.of === want[i] && s.value.length === SHARE_VALUE_BYTES);
    if (!same(msg.selfMaskShares, req.survivors) || !same(msg.keyShares, req.dropped))
      throw secaggError('INVALID_MESSAGE', `client ${msg.from} did not answer what was asked`);
    this.responses.set(msg.from, msg);
  }

  /** Closes the unmask round and returns the decoded sum of the survivors' updates. */
  async finish(): Promise<SecAggResult> {
    this.expect('unmask', 'finish');
    const u5 = new Set(this.responses.keys());
    this.requireHolders(this.u2, u5, 'after unmasking');
    let result: SecAggResult;
    try {
      result = await this.computeSum();
    } catch (e) {
      this.state = 'aborted';
      throw e;
    }
    this.state = 'done';
    return result;
  }

  /**
   * Σ_{u∈U3} y_u minus the survivors' self masks and the masks they shared with dropped clients.
   * Reads the collected state without changing it (the benchmark times it on its own).
   */
  async computeSum(): Promise<SecAggResult> {
    if (this.state !== 'unmask' && this.state !== 'done')
      throw secaggError('INVALID_TRANSITION', `server cannot unmask in phase '${this.state}'`);
    const { threshold, sessionId, dimension, encoding } = this.params;
    const sum = new Uint32Array(dimension);
    const sum32 = new Int32Array(sum.buffer);
    // Two inputs per pass over the accumulator: half the accumulator traffic.
    const inputs = [...this.maskedFrom.values()].map((y) => new Int32Array(y.buffer, y.byteOffset, y.length));
    let k = 0;
    for (; k + 1 < inputs.length; k += 2)
      accumulateWords(sum32, inputs[k] as Int32Array, 1, inputs[k + 1] as Int32Array, 1);
    if (k < inputs.length) accumulateWords(sum32, inputs[k] as Int32Array, 1, null, 1);
    const sharesOf = (owner: number, which: 'selfMaskShares' | 'keyShares'): Share[] => {
      const out: Share[] = [];
      for (const h of this.holders[owner] as number[]) {
        const r = this.responses.get(h);
        const s = r?.[which].find((x) => x.of === owner);
        if (s !== undefined) out.push({ x: h + 1, y: bytesToBigInt(s.value) });
      }
      return out;
    };
    const terms: MaskTerm[] = [];
    const survivors = [...this.u3].sort((a, b) => a - b);
    const dropped = [...this.u2].filter((u) => !this.u3.has(u)).sort((a, b) => a - b);
    for (const u of survivors) {
      const seed = combineShares(sharesOf(u, 'selfMaskShares'), threshold);
      terms.push({ key: await selfMaskKey(this.crypto, sessionId, seed), sign: -1 });
    }
    for (const v of dropped) {
      const secret = combineShares(sharesOf(v, 'keyShares'), threshold);
      const advertised = (this.keys.get(v) as PublicKeys).maskingKey;
      if (!bytesEqual(await this.crypto.x25519(secret, BASE_POINT), advertised))
        throw secaggError('INVALID_SHARE', `reconstructed key of client ${v} does not match its public key`);
      for (const w of this.params.graph.neighbours(v)) {
        if (!this.u3.has(w)) continue;
        const peer = (this.keys.get(w) as PublicKeys).maskingKey;
        // w added pairSign(w, v)·PRG(s_{w,v}); v's half never arrived, so take w's half out.
        terms.push({
          key: await pairwiseMaskKey(this.crypto, sessionId, secret, peer),
          sign: pairSign(w, v) === 1 ? -1 : 1,
        });
      }
    }
    await this.crypto.addMasks(sum, terms);
    reduceModulus(sum, encoding.modulusBits);
    return {
      sum: decodeSum(sum, survivors.length, encoding),
      encodedSum: sum,
      count: survivors.length,
      survivors,
      dropped,
    };
  }

  /** Number of AES-CTR masks computeSum expands: the cryptographic floor of unmasking. */
  masksToRegenerate(): number {
    let n = this.u3.size;
    for (const v of this.u2)
      if (!this.u3.has(v)) for (const w of this.params.graph.neighbours(v)) if (this.u3.has(w)) n++;
    return n;
  }
}
