import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NonFiniteError } from '../../core/errors.ts';
import { SecAggClient } from './client.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { SecAggError } from './errors.ts';
import {
  decodeSum,
  encodeFixedPoint,
  fixedPointConfig,
  fixedPointFor,
  quantizationStep,
  reduceModulus,
} from './fixedpoint.ts';
import { completeGraph, majorityThreshold } from './graph.ts';
import type { ForwardedShares, SecAggParams } from './messages.ts';
import { SecAggServer } from './server.ts';

const overflow = (e: unknown) => e instanceof SecAggError && e.reason === 'OVERFLOW';

test('fixedPointFor picks the largest valueBits that cannot overflow', () => {
  // 100 · (2^25 − 1) = 3,355,443,100 ≤ 2^32 − 1 = 4,294,967,295 < 100 · (2^26 − 1) = 6,710,886,300.
  assert.equal(fixedPointFor(1, 100).valueBits, 25);
  // 257 · (2^8 − 1) = 65535 = 2^16 − 1 exactly; one more client no longer fits 8 bits.
  assert.equal(fixedPointFor(1, 257, 16).valueBits, 8);
  assert.equal(fixedPointFor(1, 258, 16).valueBits, 7);
  assert.equal(fixedPointFor(1, 1).valueBits, 32);
});

test('configurations that can wrap around the modulus are rejected', () => {
  assert.throws(
    () => fixedPointConfig({ clip: 1, modulusBits: 32, valueBits: 26, maxClients: 100 }),
    overflow,
  );
  assert.throws(() => fixedPointConfig({ clip: 1, modulusBits: 16, valueBits: 16, maxClients: 2 }), overflow);
  assert.throws(() => fixedPointConfig({ clip: 0, modulusBits: 32, valueBits: 8, maxClients: 2 }), overflow);
  assert.throws(() => fixedPointConfig({ clip: 1, modulusBits: 33, valueBits: 8, maxClients: 2 }), overflow);
  assert.throws(() => fixedPointFor(1, 2 ** 32), overflow);
  fixedPointConfig({ clip: 1, modulusBits: 32, valueBits: 25, maxClients: 100 });
});

test('the worst case (every client at +clip) sums without wrapping and decodes exactly', () => {
  const cfg = fixedPointFor(2, 100);
  const one = encodeFixedPoint([5, -5, 2, -2], cfg);
  assert.deepEqual([...one], [2 ** 25 - 1, 0, 2 ** 25 - 1, 0]);
  const sum = new Uint32Array(4);
  for (let u = 0; u < 100; u++)
    for (let i = 0; i < 4; i++) sum[i] = ((sum[i] as number) + (one[i] as number)) >>> 0;
  assert.deepEqual([...decodeSum(sum, 100, cfg)], [200, -200, 200, -200]);
});

test('decoded sums are within count · step / 2 of the float64 sum of clipped values', () => {
  const cfg = fixedPointFor(0.5, 10, 24);
  const rows = Array.from({ length: 10 }, (_, u) =>
    Array.from({ length: 64 }, (_, i) => Math.sin(u * 7.1 + i * 0.37) * 0.8),
  );
  const sum = new Uint32Array(64);
  for (const r of rows) {
    const q = encodeFixedPoint(r, cfg);
    for (let i = 0; i < 64; i++) sum[i] = ((sum[i] as number) + (q[i] as number)) % 2 ** 24;
  }
  const got = decodeSum(sum, 10, cfg);
  const tol = (10 * quantizationStep(cfg)) / 2 + 1e-6; // + float32 rounding of the output
  for (let i = 0; i < 64; i++) {
    const want = rows.reduce((s, r) => s + Math.min(0.5, Math.max(-0.5, r[i] as number)), 0);
    assert.ok(Math.abs((got[i] as number) - want) <= tol, `coordinate ${i}: ${got[i]} vs ${want}`);
  }
});

test('decoding a modulus-reduced sum equals decoding the unreduced one', () => {
  const cfg = fixedPointFor(1, 4, 12);
  const q = encodeFixedPoint([0.3, -0.9, 1], cfg);
  // Add a multiple of 2^12 (what masks leave after they cancel), then reduce.
  const shifted = Uint32Array.from(q, (v) => v + 5 * 4096);
  assert.deepEqual(decodeSum(reduceModulus(shifted, 12), 1, cfg), decodeSum(q, 1, cfg));
});

test('non-finite inputs are refused, and decoding refuses counts beyond maxClients', () => {
  const cfg = fixedPointFor(1, 4);
  const out = new Uint32Array(3).fill(7);
  assert.throws(() => encodeFixedPoint([0, Number.NaN, 1], cfg, out), NonFiniteError);
  assert.throws(() => encodeFixedPoint([0, Number.POSITIVE_INFINITY, 1], cfg, out), NonFiniteError);
  assert.deepEqual([...out], [7, 7, 7]);
  // The one-pass path (no caller array) refuses them too, wherever they sit.
  for (const bad of [Number.NaN, Number.NEGATIVE_INFINITY])
    for (const at of [0, 2]) {
      const x = [0.5, -0.5, 0.25];
      x[at] = bad;
      assert.throws(() => encodeFixedPoint(x, cfg), NonFiniteError);
    }
  assert.throws(() => decodeSum(new Uint32Array(3), 5, cfg), overflow);
});

test('the protocol refuses groups the encoding cannot sum without wrapping, and unreduced words', async () => {
  const crypto = new NodeCryptoProvider();
  const params = (size: number, encoding = fixedPointFor(1, 4, 16)): SecAggParams => ({
    sessionId: crypto.randomBytes(16),
    graph: completeGraph(size),
    threshold: majorityThreshold(size),
    dimension: 3,
    encoding,
  });
  // Five clients with an encoding sized for four: 5 · L could exceed 2^16 − 1.
  assert.throws(() => new SecAggClient(0, params(5), crypto), overflow);
  assert.throws(() => new SecAggServer(params(5), crypto), overflow);
  // With a 16-bit modulus a masked word ≥ 2^16 (an input that could wrap the sum) is rejected.
  const p = params(4);
  const clients = Array.from({ length: 4 }, (_, i) => new SecAggClient(i, p, crypto));
  const server = new SecAggServer(p, crypto);
  for (const c of clients) server.receiveAdvertise(await c.advertise());
  for (const b of server.closeAdvertise())
    server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
  const f = server.closeShares()[0] as ForwardedShares;
  const honest = await (clients[0] as SecAggClient).maskInput(f, [0.1, -0.2, 0.3]);
  assert.ok(honest.masked.every((w) => w < 2 ** 16));
  const wide = Uint32Array.from(honest.masked);
  wide[1] = (wide[1] as number) + 2 ** 16;
  assert.throws(
    () => server.receiveMasked({ ...honest, masked: wide }),
    (e: unknown) => e instanceof SecAggError && e.reason === 'INVALID_MESSAGE',
  );
  // The rejection changed nothing: the honest input is still accepted.
  server.receiveMasked(honest);
});
