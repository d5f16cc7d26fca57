/**
 * The client side of SecAgg / SecAgg+ as a state machine:
 *
 *   new --advertise()--> advertised --shareKeys()--> shared --maskInput()--> masked --unmask()--> done
 *
 * Each method validates its whole input before changing any state, so a rejected (forged, replayed,
 * out-of-order) message leaves the client where it was. An honest client answers exactly one unmask
 * request and never reveals both the self-mask share and the key share of the same peer.
 */
import {
  bytesEqual,
  type CryptoProvider,
  concatBytes,
  type MaskTerm,
  X25519_BYTES,
  type X25519KeyPair,
} from './crypto.ts';
import { secaggError } from './errors.ts';
import { encodeFixedPoint, reduceModulus } from './fixedpoint.ts';
import { pairSign, pairwiseMaskKey, selfMaskKey, shareEncryptionKey } from './keys.ts';
import {
  type AdvertiseKeys,
  encodeU32,
  type ForwardedShares,
  holdersOf,
  type KeyBroadcast,
  type MaskedInput,
  type PublicKeys,
  type RevealedShare,
  type SecAggParams,
  type ShareKeys,
  shareAad,
  type UnmaskRequest,
  type UnmaskResponse,
  validateParams,
} from './messages.ts';
import { bigIntToBytes, bytesToBigInt, SHARE_VALUE_BYTES, type Share, splitSecret } from './shamir.ts';

export type ClientPhase = 'new' | 'advertised' | 'shared' | 'masked' | 'done';

/** Plaintext of one encrypted share: from, to, share of b, share of s^SK. */
const SHARE_PLAINTEXT_BYTES = 8 + 2 * SHARE_VALUE_BYTES;

interface HeldShares {
  readonly selfMask: Share;
  readonly key: Share;
}

export function sameSession(a: Uint8Array, b: Uint8Array): boolean {
  return bytesEqual(a, b);
}

export class SecAggClient {
  readonly id: number;
  private readonly params: SecAggParams;
  private readonly crypto: CryptoProvider;
  private readonly holders: ReadonlySet<number>;
  private state: ClientPhase = 'new';
  private encryptionPair: X25519KeyPair | null = null;
  private maskingPair: X25519KeyPair | null = null;
  private peers = new Map<number, PublicKeys>();
  private selfMaskSeed: Uint8Array | null = null;
  /** Shares this client holds, by owner (its own included), once decrypted. */
  private held = new Map<number, HeldShares>();
  private ownShares: HeldShares | null = null;

  constructor(id: number, params: SecAggParams, crypto: CryptoProvider) {
    validateParams(params);
    if (!Number.isInteger(id) || id < 0 || id >= params.graph.size)
      throw secaggError('INVALID_MESSAGE', `client id ${id} is outside 0..${params.graph.size - 1}`);
    this.id = id;
    this.params = params;
    this.crypto = crypto;
    this.holders = new Set(holdersOf(params.graph, id));
  }

  get phase(): ClientPhase {
    return this.state;
  }

  private expect(phase: ClientPhase, action: string): void {
    if (this.state !== phase)
      throw secaggError('INVALID_TRANSITION', `client ${this.id} cannot ${action} in phase '${this.state}'`);
  }

  private checkSession(session: Uint8Array, what: string): void {
    if (!sameSession(session, this.params.sessionId))
      throw secaggError('REPLAYED_MESSAGE', `${what} belongs to another session`);
  }

  /** Round 0: fresh key pairs for share encryption and for pairwise masks. */
  async advertise(): Promise<AdvertiseKeys> {
    this.expect('new', 'advertise keys');
    const enc = await this.crypto.generateX25519();
    const mask = await this.crypto.generateX25519();
    this.encryptionPair = enc;
    this.maskingPair = mask;
    this.state = 'advertised';
    return {
      session: this.params.sessionId,
      id: this.id,
      encryptionKey: enc.publicKey,
      maskingKey: mask.publicKey,
    };
  }

  /** Round 1: Shamir-share b_u and s_u^SK among the live holders, each share encrypted to its holder. */
  async shareKeys(broadcast: KeyBroadcast): Promise<ShareKeys> {
    this.expect('advertised', 'share keys');
    this.checkSession(broadcast.session, 'key broadcast');
    if (broadcast.to !== this.id)
      throw secaggError('REPLAYED_MESSAGE', `key broadcast for ${broadcast.to} sent to ${this.id}`);
    const enc = this.encryptionPair as X25519KeyPair;
    const mask = this.maskingPair as X25519KeyPair;
    const peers = new Map<number, PublicKeys>();
    const seenKeys: Uint8Array[] = [];
    for (const p of broadcast.peers) {
      if (!this.holders.has(p.id))
        throw secaggError('INVALID_MESSAGE', `client ${p.id} is not a neighbour of ${this.id}`);
      if (peers.has(p.id)) throw secaggError('INVALID_MESSAGE', `client ${p.id} listed twice`);
      if (p.encryptionKey.length !== X25519_BYTES || p.maskingKey.length !== X25519_BYTES)
        throw secaggError('INVALID_MESSAGE', `client ${p.id} has malformed keys`);
      // Distinct keys everywhere: a server replaying one client's key as another's is caught here.
      for (const k of [p.encryptionKey, p.maskingKey]) {
        if (seenKeys.some((s) => bytesEqual(s, k)))
          throw secaggError('INVALID_MESSAGE', `client ${p.id} reuses a public key`);
        seenKeys.push(k);
      }
      peers.set(p.id, p);
    }
    const me = peers.get(this.id);
    if (
      me === undefined ||
      !bytesEqual(me.encryptionKey, enc.publicKey) ||
      !bytesEqual(me.maskingKey, mask.publicKey)
    )
      throw secaggError('INVALID_MESSAGE', `key broadcast does not carry client ${this.id}'s own keys`);
    if (peers.size < this.params.threshold)
      throw secaggError('BELOW_THRESHOLD', `${peers.size} live holders, threshold ${this.params.threshold}`);

    const ids = [...peers.keys()].sort((a, b) => a - b);
    const points = ids.map((v) => v + 1);
    const seed = this.crypto.randomBytes(32);
    const rnd = (n: number) => this.crypto.randomBytes(n);
    const seedShares = splitSecret(seed, points, this.params.threshold, rnd);
    const keyShares = splitSecret(mask.privateKey, points, this.params.threshold, rnd);
    const session = this.params.sessionId;
    const sealed = [];
    let own: HeldShares | null = null;
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i] as number;
      const s = { selfMask: seedShares[i] as Share, key: keyShares[i] as Share };
      if (v === this.id) {
        own = s;
        continue;
      }
      const key = await shareEncryptionKey(
        this.crypto,
        session,
        enc.privateKey,
        (peers.get(v) as PublicKeys).encryptionKey,
      );
      const plaintext = concatBytes(
        encodeU32(this.id),
        encodeU32(v),
        bigIntToBytes(s.selfMask.y, SHARE_VALUE_BYTES),
        bigIntToBytes(s.key.y, SHARE_VALUE_BYTES),
      );
      const nonce = this.crypto.randomBytes(12);
      const ciphertext = await this.crypto.sealAesGcm(key, nonce, plaintext, shareAad(session, this.id, v));
      sealed.push({ from: this.id, to: v, nonce, ciphertext });
    }
    this.peers = peers;
    this.selfMaskSeed = seed;
    this.ownShares = own;
    this.state = 'shared';
    return { session, from: this.id, shares: sealed };
  }

  /**
   * Round 2: decrypts and checks the shares addressed to this client, then sends its masked input.
   * The senders of those shares are the peers that completed round 1: exactly the peers to mask with.
   */
  async maskInput(forward: ForwardedShares, update: ArrayLike<number>): Promise<MaskedInput> {
    this.expect('shared', 'send its masked input');
    this.checkSession(forward.session, 'forwarded shares');
    if (forward.to !== this.id)
      throw secaggError('REPLAYED_MESSAGE', `shares for ${forward.to} delivered to ${this.id}`);
    if (update.length !== this.params.dimension)
      throw secaggError(
        'INVALID_MESSAGE',
        `update has ${update.length} values, expected ${this.params.dimension}`,
      );
    const enc = this.encryptionPair as X25519KeyPair;
    const mask = this.maskingPair as X25519KeyPair;
    const session = this.params.sessionId;
    const held = new Map<number, HeldShares>();
    for (const s of forward.shares) {
      const sender = this.peers.get(s.from);
      if (s.to !== this.id)
        throw secaggError('REPLAYED_MESSAGE', `share for ${s.to} delivered to ${this.id}`);
      if (sender === undefined || s.from === this.id)
        throw secaggError('INVALID_MESSAGE', `share from ${s.from}, not a live neighbour of ${this.id}`);
      if (held.has(s.from)) throw secaggError('REPLAYED_MESSAGE', `second share from ${s.from}`);
      const key = await shareEncryptionKey(this.crypto, session, enc.privateKey, sender.encryptionKey);
      const plain = await this.crypto.openAesGcm(
        key,
        s.nonce,
        s.ciphertext,
        shareAad(session, s.from, this.id),
      );
      const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
      if (
        plain.length !== SHARE_PLAINTEXT_BYTES ||
        view.getUint32(0) !== s.from ||
        view.getUint32(4) !== this.id
      )
        throw secaggError('INVALID_MESSAGE', `share from ${s.from} has a malformed plaintext`);
      const x = this.id + 1;
      held.set(s.from, {
        selfMask: { x, y: bytesToBigInt(plain.subarray(8, 8 + SHARE_VALUE_BYTES)) },
        key: { x, y: bytesToBigInt(plain.subarray(8 + SHARE_VALUE_BYTES)) },
      });
    }
    if (held.size + 1 < this.params.threshold)
      throw secaggError(
        'BELOW_THRESHOLD',
        `${held.size + 1} live holders, threshold ${this.params.threshold}`,
      );

    const words = encodeFixedPoint(update, this.params.encoding);
    const terms: MaskTerm[] = [
      { key: await selfMaskKey(this.crypto, session, this.selfMaskSeed as Uint8Array), sign: 1 as const },
    ];
    for (const v of held.keys()) {
      const peer = this.peers.get(v) as PublicKeys;
      terms.push({
        key: await pairwiseMaskKey(this.crypto, session, mask.privateKey, peer.maskingKey),
        sign: pairSign(this.id, v),
      });
    }
    await this.crypto.addMasks(words, terms);
    reduceModulus(words, this.params.encoding.modulusBits);
    held.set(this.id, this.ownShares as HeldShares);
    this.held = held;
    this.state = 'masked';
    return { session, from: this.id, masked: words };
  }

  /**
   * Round 3: reveals b-shares of survivors and key shares of dropped clients. Refuses a request that
   * names a client in both lists, names a client it holds no share of, or leaves fewer than t
   * survivors among its holders; answers only once.
   */
  async unmask(request: UnmaskRequest): Promise<UnmaskResponse> {
    this.expect('masked', 'answer an unmask request');
    this.checkSession(request.session, 'unmask request');
    if (request.to !== this.id)
      throw secaggError('REPLAYED_MESSAGE', `unmask request for ${request.to} sent to ${this.id}`);
    const survivors = new Set(request.survivors);
    const dropped = new Set(request.dropped);
    if (survivors.size !== request.survivors.length || dropped.size !== request.dropped.length)
      throw secaggError('INVALID_MESSAGE', 'unmask request lists a client twice');
    for (const v of survivors)
      if (dropped.has(v))
        throw secaggError(
          'BOTH_SHARES_REQUESTED',
          `server asked client ${this.id} for both shares of client ${v}`,
        );
    for (const v of [...survivors, ...dropped])
      if (!this.held.has(v))
        throw secaggError('INVALID_MESSAGE', `client ${this.id} holds no share of client ${v}`);
    if (!survivors.has(this.id))
      throw secaggError('INVALID_MESSAGE', `request lists client ${this.id} as dropped`);
    if (survivors.size < this.params.threshold)
      throw secaggError(
        'BELOW_THRESHOLD',
        `${survivors.size} survivors among holders, threshold ${this.params.threshold}`,
      );
    const reveal = (v: number, which: keyof HeldShares): RevealedShare => ({
      of: v,
      value: bigIntToBytes((this.held.get(v) as HeldShares)[which].y, SHARE_VALUE_BYTES),
    });
    const response = {
      session: this.params.sessionId,
      from: this.id,
      selfMaskShares: [...survivors].sort((a, b) => a - b).map((v) => reveal(v, 'selfMask')),
      keyShares: [...dropped].sort((a, b) => a - b).map((v) => reveal(v, 'key')),
    };
    this.state = 'done';
    return response;
  }
}
