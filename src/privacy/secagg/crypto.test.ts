import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { describe, test } from 'node:test';
import type { CryptoProvider } from './crypto.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { WebCryptoProvider } from './crypto-web.ts';
import { SecAggError } from './errors.ts';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const providers: CryptoProvider[] = [new NodeCryptoProvider(), new WebCryptoProvider()];

/** Independent PRG reference: AES-128-ECB of the big-endian counter blocks 0, 1, 2, ... */
function referenceKeystream(key: Uint8Array, words: number): Uint32Array {
  const blocks = Math.ceil((words * 4) / 16);
  const counters = Buffer.alloc(blocks * 16);
  for (let i = 0; i < blocks; i++) counters.writeUInt32BE(i, i * 16 + 12);
  const ecb = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  const out = Buffer.concat([ecb.update(counters), ecb.final()]);
  return new Uint32Array(out.buffer.slice(out.byteOffset, out.byteOffset + words * 4));
}

const isAuthFailure = (e: unknown) => e instanceof SecAggError && e.reason === 'AUTH_FAILED';

for (const crypto of providers) {
  describe(`CryptoProvider ${crypto.name}`, () => {
    test('X25519 reproduces the RFC 7748 §6.1 Diffie–Hellman example', async () => {
      const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
      const bobPublic = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
      const basePoint = new Uint8Array(32);
      basePoint[0] = 9;
      assert.equal(
        toHex(await crypto.x25519(alice, basePoint)),
        '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
      );
      assert.equal(
        toHex(await crypto.x25519(alice, bobPublic)),
        '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
      );
    });

    test('generated key pairs agree on a shared secret', async () => {
      const a = await crypto.generateX25519();
      const b = await crypto.generateX25519();
      assert.equal(a.publicKey.length, 32);
      assert.equal(a.privateKey.length, 32);
      assert.deepEqual(
        await crypto.x25519(a.privateKey, b.publicKey),
        await crypto.x25519(b.privateKey, a.publicKey),
      );
    });

    test('X25519 rejects a low-order (all-zero) public key', async () => {
      const a = await crypto.generateX25519();
      await assert.rejects(
        crypto.x25519(a.privateKey, new Uint8Array(32)),
        (e) => e instanceof SecAggError && e.reason === 'INVALID_MESSAGE',
      );
    });

    test('HKDF-SHA256 reproduces RFC 5869 test case 1', async () => {
      const okm = await crypto.hkdfSha256(
        new Uint8Array(22).fill(0x0b),
        hex('000102030405060708090a0b0c'),
        hex('f0f1f2f3f4f5f6f7f8f9'),
        42,
      );
      assert.equal(
        toHex(okm),
        '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
      );
    });

    test('AES-GCM round-trips and rejects any altered byte, tag, nonce or AAD', async () => {
      const key = crypto.randomBytes(32);
      const nonce = crypto.randomBytes(12);
      const aad = crypto.randomBytes(20);
      const msg = crypto.randomBytes(74);
      const sealed = await crypto.sealAesGcm(key, nonce, msg, aad);
      assert.equal(sealed.length, msg.length + 16);
      assert.deepEqual(await crypto.openAesGcm(key, nonce, sealed, aad), msg);
      for (const pos of [0, 40, sealed.length - 1]) {
        const bad = sealed.slice();
        bad[pos] = (bad[pos] as number) ^ 1;
        await assert.rejects(crypto.openAesGcm(key, nonce, bad, aad), isAuthFailure);
      }
      const badAad = aad.slice();
      badAad[3] = (badAad[3] as number) ^ 0x80;
      await assert.rejects(crypto.openAesGcm(key, nonce, sealed, badAad), isAuthFailure);
      const badNonce = nonce.slice();
      badNonce[0] = (badNonce[0] as number) ^ 1;
      await assert.rejects(crypto.openAesGcm(key, badNonce, sealed, aad), isAuthFailure);
      await assert.rejects(crypto.openAesGcm(key, nonce, sealed.subarray(0, 10), aad), isAuthFailure);
    });

    test('expandMask is AES-128-CTR from the zero counter (checked against AES-ECB of counters)', async () => {
      const key = crypto.randomBytes(16);
      for (const words of [1, 3, 4, 1001])
        assert.deepEqual(await crypto.expandMask(key, words), referenceKeystream(key, words));
    });

    test('addMasks equals expanding every term and adding mod 2^32, across chunk boundaries', async () => {
      const words = 2 * 65536 + 7;
      const signs = [1, -1, -1, 1, 1, -1, 1] as const; // one pass of four, one of two, one single
      const terms = signs.map((sign) => ({ key: crypto.randomBytes(16), sign }));
      const start = new Uint32Array(words);
      for (let i = 0; i < words; i++) start[i] = (i * 2654435761) >>> 0;
      const acc = start.slice();
      await crypto.addMasks(acc, terms);
      const streams = terms.map((t) => referenceKeystream(t.key, words));
      for (const i of [0, 1, 65535, 65536, 65537, words - 1]) {
        let want = BigInt(start[i] as number);
        for (let k = 0; k < terms.length; k++)
          want +=
            BigInt((terms[k] as { sign: number }).sign) * BigInt((streams[k] as Uint32Array)[i] as number);
        assert.equal(acc[i], Number(BigInt.asUintN(32, want)), `word ${i}`);
      }
    });
  });
}

test('node:crypto and WebCrypto providers produce identical masks and interoperable keys', async () => {
  const [node, web] = providers as [CryptoProvider, CryptoProvider];
  const key = node.randomBytes(16);
  assert.deepEqual(await node.expandMask(key, 5000), await web.expandMask(key, 5000));
  const a = await node.generateX25519();
  const b = await web.generateX25519();
  assert.deepEqual(await node.x25519(a.privateKey, b.publicKey), await web.x25519(b.privateKey, a.publicKey));
  const k = node.randomBytes(32);
  const nonce = node.randomBytes(12);
  const sealed = await node.sealAesGcm(k, nonce, new Uint8Array([1, 2, 3]), new Uint8Array([9]));
  assert.deepEqual(await web.openAesGcm(k, nonce, sealed, new Uint8Array([9])), new Uint8Array([1, 2, 3]));
});
