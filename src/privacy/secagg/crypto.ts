/**
 * The cryptographic primitives secure aggregation needs, behind one interface so that the same
 * protocol code runs on `node:crypto` in Node and on WebCrypto (`crypto.subtle`) in browsers.
 *
 * Every key and public value crosses the interface as raw bytes (X25519 keys as their 32-byte RFC 7748
 * encodings), so a secret key reconstructed from Shamir shares can be used directly, and two providers
 * can be checked against each other byte for byte. Methods that WebCrypto can only offer
 * asynchronously are async in the interface too.
 */
import { secaggError } from './errors.ts';

export interface X25519KeyPair {
  /** 32-byte little-endian u-coordinate (RFC 7748). */
  readonly publicKey: Uint8Array;
  /** 32 random bytes; clamping is applied inside the scalar multiplication, as RFC 7748 specifies. */
  readonly privateKey: Uint8Array;
}

/** One pseudorandom mask to add (`sign` = 1) or subtract (`sign` = -1) modulo 2^32. */
export interface MaskTerm {
  /** AES-128 key: the PRG seed. */
  readonly key: Uint8Array;
  readonly sign: 1 | -1;
}

export interface CryptoProvider {
  readonly name: string;
  /** Cryptographically secure random bytes. */
  randomBytes(length: number): Uint8Array;
  generateX25519(): Promise<X25519KeyPair>;
  /** Raw X25519 shared secret (32 bytes). Rejects the all-zero output of low-order public keys. */
  x25519(privateKey: Uint8Array, peerPublicKey: Uint8Array): Promise<Uint8Array>;
  /** HKDF with SHA-256 (RFC 5869). */
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  /** AES-256-GCM; returns ciphertext followed by the 16-byte tag. */
  sealAesGcm(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Inverse of sealAesGcm; throws SecAggError('AUTH_FAILED') when the tag does not verify. */
  openAesGcm(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /**
   * The PRG: `words` 32-bit words of AES-128-CTR keystream under `key`, starting from the all-zero
   * counter block (big-endian counter; at most 2^64 blocks, so WebCrypto's 64-bit counter and
   * OpenSSL's 128-bit counter give the same stream).
   */
  expandMask(key: Uint8Array, words: number): Promise<Uint32Array>;
  /** acc += Σ sign · PRG(key) (mod 2^32), word by word; the same as expanding each term and adding. */
  addMasks(acc: Uint32Array, terms: readonly MaskTerm[]): Promise<void>;
}

export const AES_GCM_TAG_BYTES = 16;
export const AES_GCM_NONCE_BYTES = 12;
export const X25519_BYTES = 32;
export const MASK_KEY_BYTES = 16;

export function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length)
    throw secaggError('INVALID_MESSAGE', `${what} must be ${length} bytes, got ${bytes.length}`);
}

export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i] as number;
  return acc === 0;
}

/**
 * acc += s1·m1 (+ s2·m2) modulo 2^32, on Int32Array views so `| 0` does the reduction. Two masks per
 * pass halve the reads and writes of the accumulator; the intermediate sum stays below 2^53, exact.
 */
export function accumulateWords(
  acc: Int32Array,
  m1: Int32Array,
  s1: 1 | -1,
  m2: Int32Array | null,
  s2: 1 | -1,
): void {
  const n = acc.length;
  if (m2 === null) {
    if (s1 === 1) for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) + (m1[i] as number)) | 0;
    else for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) - (m1[i] as number)) | 0;
    return;
  }
  if (s1 === 1 && s2 === 1)
    for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) + (m1[i] as number) + (m2[i] as number)) | 0;
  else if (s1 === 1)
    for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) + (m1[i] as number) - (m2[i] as number)) | 0;
  else if (s2 === 1)
    for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) - (m1[i] as number) + (m2[i] as number)) | 0;
  else for (let i = 0; i < n; i++) acc[i] = ((acc[i] as number) - (m1[i] as number) - (m2[i] as number)) | 0;
}

/**
 * acc += s1·m1 + s2·m2 + s3·m3 + s4·m4 modulo 2^32: four masks per pass over the accumulator.
 * Math.imul by ±1 keeps everything in int32 (faster in V8 than multiplying doubles).
 */
export function accumulateFour(
  acc: Int32Array,
  masks: readonly [Int32Array, Int32Array, Int32Array, Int32Array],
  signs: readonly [number, number, number, number],
): void {
  const [m1, m2, m3, m4] = masks;
  const [s1, s2, s3, s4] = signs;
  const n = acc.length;
  for (let i = 0; i < n; i++)
    acc[i] =
      ((acc[i] as number) +
        Math.imul(s1, m1[i] as number) +
        Math.imul(s2, m2[i] as number) +
        Math.imul(s3, m3[i] as number) +
        Math.imul(s4, m4[i] as number)) |
      0;
}

/** A 32-bit-aligned Int32Array view of bytes (copies only if the bytes are misaligned). */
export function int32View(bytes: Uint8Array, words: number): Int32Array {
  if (bytes.byteOffset % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, words);
  return new Int32Array(new Uint8Array(bytes.subarray(0, words * 4)).buffer, 0, words);
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
