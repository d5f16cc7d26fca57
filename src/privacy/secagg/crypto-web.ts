/**
 * CryptoProvider on WebCrypto (`crypto.subtle`): what a browser client uses. Node 20 exposes the same
 * API as `globalThis.crypto`, so the whole test suite also runs against this provider in Node.
 * X25519 in WebCrypto needs a recent browser (Chrome 133+, Firefox 130+, Safari 17+).
 */
import {
  AES_GCM_TAG_BYTES,
  accumulateWords,
  type CryptoProvider,
  checkLength,
  isAllZero,
  MASK_KEY_BYTES,
  type MaskTerm,
  X25519_BYTES,
  type X25519KeyPair,
} from './crypto.ts';
import { secaggError } from './errors.ts';

// PKCS#8 header of an X25519 private key (RFC 8410); the raw 32 bytes follow it.
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);

/** A copy backed by a plain ArrayBuffer, the only kind WebCrypto's BufferSource accepts. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

export class WebCryptoProvider implements CryptoProvider {
  readonly name = 'webcrypto';
  private readonly subtle: SubtleCrypto;
  private readonly source: Crypto;

  constructor(source: Crypto = globalThis.crypto) {
    this.source = source;
    this.subtle = source.subtle;
  }

  randomBytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    // getRandomValues fills at most 65536 bytes per call.
    for (let o = 0; o < length; o += 65536)
      this.source.getRandomValues(out.subarray(o, Math.min(length, o + 65536)));
    return out;
  }

  async generateX25519(): Promise<X25519KeyPair> {
    const pair = (await this.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits'])) as CryptoKeyPair;
    const pkcs8 = new Uint8Array(await this.subtle.exportKey('pkcs8', pair.privateKey));
    const out = {
      publicKey: new Uint8Array(await this.subtle.exportKey('raw', pair.publicKey)),
      privateKey: pkcs8.slice(pkcs8.length - X25519_BYTES),
    };
    this.privateKeys.set(out.privateKey, pair.privateKey);
    this.publicKeys.set(out.publicKey, pair.publicKey);
    return out;
  }

  async x25519(privateKey: Uint8Array, peerPublicKey: Uint8Array): Promise<Uint8Array> {
    checkLength(privateKey, X25519_BYTES, 'X25519 private key');
    checkLength(peerPublicKey, X25519_BYTES, 'X25519 public key');
    let shared: Uint8Array;
    try {
      const priv = await this.importPrivate(privateKey);
      const pub = await this.importPublic(peerPublicKey);
      shared = new Uint8Array(await this.subtle.deriveBits({ name: 'X25519', public: pub }, priv, 256));
    } catch (e) {
      throw secaggError('INVALID_MESSAGE', `X25519 rejected the key: ${(e as Error).message}`);
    }
    if (isAllZero(shared)) throw secaggError('INVALID_MESSAGE', 'X25519 public key has low order');
    return shared;
  }

  // Key imports dominate small X25519 operations, and the protocol passes the same byte arrays many
  // times: cache the CryptoKey per array (which the protocol never mutates).
  private readonly privateKeys = new WeakMap<Uint8Array, CryptoKey>();
  private readonly publicKeys = new WeakMap<Uint8Array, CryptoKey>();

  private async importPrivate(raw: Uint8Array): Promise<CryptoKey> {
    let key = this.privateKeys.get(raw);
    if (key === undefined) {
      const pkcs8 = new Uint8Array(PKCS8_X25519_PREFIX.length + X25519_BYTES);
      pkcs8.set(PKCS8_X25519_PREFIX);
      pkcs8.set(raw, PKCS8_X25519_PREFIX.length);
      key = await this.subtle.importKey('pkcs8', pkcs8, { name: 'X25519' }, false, ['deriveBits']);
      this.privateKeys.set(raw, key);
    }
    return key;
  }

  private async importPublic(raw: Uint8Array): Promise<CryptoKey> {
    let key = this.publicKeys.get(raw);
    if (key === undefined) {
      key = await this.subtle.importKey('raw', own(raw), { name: 'X25519' }, false, []);
      this.publicKeys.set(raw, key);
    }
    return key;
  }

  async hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
    const key = await this.subtle.importKey('raw', own(ikm), 'HKDF', false, ['deriveBits']);
    const bits = await this.subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: own(salt), info: own(info) },
      key,
      length * 8,
    );
    return new Uint8Array(bits);
  }

  async sealAesGcm(
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const k = await this.subtle.importKey('raw', own(key), 'AES-GCM', false, ['encrypt']);
    const params = {
      name: 'AES-GCM',
      iv: own(nonce),
      additionalData: own(aad),
      tagLength: AES_GCM_TAG_BYTES * 8,
    };
    return new Uint8Array(await this.subtle.encrypt(params, k, own(plaintext)));
  }

  async openAesGcm(
    key: Uint8Array,
    nonce: Uint8Array,
    sealed: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const k = await this.subtle.importKey('raw', own(key), 'AES-GCM', false, ['decrypt']);
    const params = {
      name: 'AES-GCM',
      iv: own(nonce),
      additionalData: own(aad),
      tagLength: AES_GCM_TAG_BYTES * 8,
    };
    try {
      return new Uint8Array(await this.subtle.decrypt(params, k, own(sealed)));
    } catch {
      throw secaggError('AUTH_FAILED', 'AES-GCM tag does not verify');
    }
  }

  async expandMask(key: Uint8Array, words: number): Promise<Uint32Array> {
    checkLength(key, MASK_KEY_BYTES, 'mask key');
    const k = await this.subtle.importKey('raw', own(key), 'AES-CTR', false, ['encrypt']);
    const stream = await this.subtle.encrypt(
      { name: 'AES-CTR', counter: new Uint8Array(16), length: 64 },
      k,
      new Uint8Array(words * 4),
    );
    return new Uint32Array(stream, 0, words);
  }

  async addMasks(acc: Uint32Array, terms: readonly MaskTerm[]): Promise<void> {
    const acc32 = new Int32Array(acc.buffer, acc.byteOffset, acc.length);
    let k = 0;
    for (; k + 1 < terms.length; k += 2) {
      const t1 = terms[k] as MaskTerm;
      const t2 = terms[k + 1] as MaskTerm;
      const [m1, m2] = await Promise.all([
        this.expandMask(t1.key, acc.length),
        this.expandMask(t2.key, acc.length),
      ]);
      accumulateWords(
        acc32,
        new Int32Array(m1.buffer, 0, acc.length),
        t1.sign,
        new Int32Array(m2.buffer, 0, acc.length),
        t2.sign,
      );
    }
    if (k < terms.length) {
      const t = terms[k] as MaskTerm;
      const m = await this.expandMask(t.key, acc.length);
      accumulateWords(acc32, new Int32Array(m.buffer, 0, acc.length), t.sign, null, 1);
    }
  }
}
