/**
 * CryptoProvider on `node:crypto` (OpenSSL). Masks are generated in 256 KiB chunks from one streaming
 * AES-CTR cipher per term and added, four masks per pass over the accumulator, while the chunk is
 * still in cache; expanding whole 4 MB masks first and adding them afterwards is about twice as slow.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import {
  AES_GCM_TAG_BYTES,
  accumulateFour,
  accumulateWords,
  type CryptoProvider,
  checkLength,
  int32View,
  isAllZero,
  MASK_KEY_BYTES,
  type MaskTerm,
  X25519_BYTES,
  type X25519KeyPair,
} from './crypto.ts';
import { SecAggError, secaggError } from './errors.ts';

// DER headers of X25519 keys (RFC 8410): the raw 32 bytes follow them.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const ZERO_COUNTER = Buffer.alloc(16);
const CHUNK_WORDS = 65536;

// Importing a DER key costs far more than the X25519 multiplication itself, and protocol code passes
// the same byte arrays again and again: cache the KeyObject per array. The arrays must not be mutated
// after first use, which the protocol never does.
const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new WeakMap<Uint8Array, KeyObject>();

function privateKeyObject(raw: Uint8Array): KeyObject {
  checkLength(raw, X25519_BYTES, 'X25519 private key');
  let key = privateKeys.get(raw);
  if (key === undefined) {
    key = importPrivate(raw);
    privateKeys.set(raw, key);
  }
  return key;
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  checkLength(raw, X25519_BYTES, 'X25519 public key');
  let key = publicKeys.get(raw);
  if (key === undefined) {
    key = importPublic(raw);
    publicKeys.set(raw, key);
  }
  return key;
}

function importPrivate(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

function importPublic(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

function lastBytes(buf: Buffer, n: number): Uint8Array {
  return new Uint8Array(buf.subarray(buf.length - n));
}

export class NodeCryptoProvider implements CryptoProvider {
  readonly name = 'node:crypto';
  private zeros = Buffer.alloc(CHUNK_WORDS * 4);

  randomBytes(length: number): Uint8Array {
    return new Uint8Array(randomBytes(length));
  }

  async generateX25519(): Promise<X25519KeyPair> {
    const { publicKey, privateKey } = generateKeyPairSync('x25519');
    const pair = {
      publicKey: lastBytes(publicKey.export({ format: 'der', type: 'spki' }), X25519_BYTES),
      privateKey: lastBytes(privateKey.export({ format: 'der', type: 'pkcs8' }), X25519_BYTES),
    };
    privateKeys.set(pair.privateKey, privateKey);
    publicKeys.set(pair.publicKey, publicKey);
    return pair;
  }

  async x25519(privateKey: Uint8Array, peerPublicKey: Uint8Array): Promise<Uint8Array> {
    let shared: Uint8Array;
    try {
      shared = new Uint8Array(
        diffieHellman({
          privateKey: privateKeyObject(privateKey),
          publicKey: publicKeyObject(peerPublicKey),
        }),
      );
    } catch (e) {
      if (e instanceof SecAggError) throw e;
      throw secaggError('INVALID_MESSAGE', `X25519 rejected the key: ${(e as Error).message}`);
    }
    if (isAllZero(shared)) throw secaggError('INVALID_MESSAGE', 'X25519 public key has low order');
    return shared;
  }

  async hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array> {
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  }

  async sealAesGcm(
    key: Uint8Array,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: AES_GCM_TAG_BYTES });
    cipher.setAAD(aad);
    return new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]));
  }

  async openAesGcm(
    key: Uint8Array,
    nonce: Uint8Array,
    sealed: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    if (sealed.length < AES_GCM_TAG_BYTES)
      throw secaggError('AUTH_FAILED', 'ciphertext shorter than its tag');
    const body = sealed.subarray(0, sealed.length - AES_GCM_TAG_BYTES);
    const tag = sealed.subarray(sealed.length - AES_GCM_TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: AES_GCM_TAG_BYTES });
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      return new Uint8Array(Buffer.concat([decipher.update(body), decipher.final()]));
    } catch {
      throw secaggError('AUTH_FAILED', 'AES-GCM tag does not verify');
    }
  }

  async expandMask(key: Uint8Array, words: number): Promise<Uint32Array> {
    checkLength(key, MASK_KEY_BYTES, 'mask key');
    const cipher = createCipheriv('aes-128-ctr', key, ZERO_COUNTER);
    const out = cipher.update(Buffer.alloc(words * 4));
    // Small outputs can come from Node's shared buffer pool at an offset that is not 4-aligned.
    if (out.byteOffset % 4 === 0) return new Uint32Array(out.buffer, out.byteOffset, words);
    return new Uint32Array(new Uint8Array(out).buffer, 0, words);
  }

  async addMasks(acc: Uint32Array, terms: readonly MaskTerm[]): Promise<void> {
    for (const t of terms) checkLength(t.key, MASK_KEY_BYTES, 'mask key');
    const ciphers = terms.map((t) => createCipheriv('aes-128-ctr', t.key, ZERO_COUNTER));
    const acc32 = new Int32Array(acc.buffer, acc.byteOffset, acc.length);
    for (let off = 0; off < acc.length; off += CHUNK_WORDS) {
      const len = Math.min(CHUNK_WORDS, acc.length - off);
      const zeros = len === CHUNK_WORDS ? this.zeros : this.zeros.subarray(0, len * 4);
      const part = acc32.subarray(off, off + len);
      let k = 0;
      for (; k + 3 < terms.length; k += 4) {
        const next = (j: number) =>
          int32View((ciphers[k + j] as ReturnType<typeof createCipheriv>).update(zeros), len);
        const sign = (j: number) => (terms[k + j] as MaskTerm).sign;
        accumulateFour(part, [next(0), next(1), next(2), next(3)], [sign(0), sign(1), sign(2), sign(3)]);
      }
      for (; k + 1 < terms.length; k += 2) {
        const m1 = int32View((ciphers[k] as ReturnType<typeof createCipheriv>).update(zeros), len);
        const m2 = int32View((ciphers[k + 1] as ReturnType<typeof createCipheriv>).update(zeros), len);
        accumulateWords(part, m1, (terms[k] as MaskTerm).sign, m2, (terms[k + 1] as MaskTerm).sign);
      }
      if (k < terms.length) {
        const m1 = int32View((ciphers[k] as ReturnType<typeof createCipheriv>).update(zeros), len);
        accumulateWords(part, m1, (terms[k] as MaskTerm).sign, null, 1);
      }
    }
  }
}
