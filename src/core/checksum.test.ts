import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Checksum64, checksum64Available, checksum64ModuleBytes, finishChecksum64 } from './checksum.ts';
import { Rng } from './rng.ts';

/**
 * Independent reference, written from the definition in checksum.ts's comment rather than from its
 * code: each lane's words read byte by byte (little-endian), the sums kept exact as BigInt and
 * reduced mod 2^64 only at the end (wrap-around commutes with addition), then the same mix.
 */
function reference(bytes: Uint8Array): number {
  const n = Math.ceil(bytes.length / 16) * 4;
  const a = [0n, 0n, 0n, 0n];
  const b = [0n, 0n, 0n, 0n];
  for (let k = 0; k < n; k++) {
    let w = 0;
    for (let i = 3; i >= 0; i--) w = w * 256 + (bytes[4 * k + i] ?? 0);
    a[k % 4] = (a[k % 4] as bigint) + BigInt(w);
    b[k % 4] = (b[k % 4] as bigint) + (a[k % 4] as bigint);
  }
  const m = (1n << 64n) - 1n;
  let x = BigInt(bytes.length);
  for (const v of [...a, ...b]) {
    x = ((x ^ (v & m)) * 0x9e3779b97f4a7c15n) & m;
    x ^= x >> 32n;
  }
  return Number(x >> 12n);
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

const LENGTHS = [0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 127, 128, 129, 1000, 4096, 4099, 40_003];

test('checksum64 matches the reference for every length (the kernel where it runs, else the JS path)', () => {
  const rng = new Rng(5);
  const sums = new Checksum64();
  for (const n of LENGTHS) {
    const bytes = randomBytes(rng, n);
    assert.equal(sums.of(bytes), reference(bytes), `n=${n}`);
  }
  // All-ones words make the 64-bit sums wrap: B passes 2^64 after ~2^16.5 words per lane.
  const ones = new Uint8Array(1 << 20).fill(0xff);
  assert.equal(sums.of(ones), reference(ones));
});

test('checksum64: pieces summed one after another give the whole payload’s checksum', {
  skip: !checksum64Available() && 'no Wasm SIMD',
}, () => {
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
  const kernel = new WebAssembly.Instance(new WebAssembly.Module(checksum64ModuleBytes()), {
    env: { mem: memory },
  }).exports.checksum64 as (ptr: number, length: number, state: number) => void;
  const rng = new Rng(6);
  const payload = randomBytes(rng, 5000);
  const view = new Uint8Array(memory.buffer);
  view.set(payload, 1024);
  view.fill(0, 1024 + payload.length, 1024 + 5008);
  view.fill(0, 0, 64);
  // Pieces of 16·k bytes (the writer's pieces end on slot boundaries), the last one padded.
  for (const [from, to] of [
    [0, 48],
    [48, 4096],
    [4096, 4112],
    [4112, 5008],
  ] as const)
    kernel(1024 + from, to - from, 0);
  assert.equal(finishChecksum64(new BigUint64Array(memory.buffer, 0, 8), payload.length), reference(payload));
});

test('checksum64 catches torn writes, zeroed sectors, swapped blocks, flipped bits and two top-bit flips', () => {
  const rng = new Rng(7);
  const sums = new Checksum64();
  const payload = randomBytes(rng, 400_000);
  const good = sums.of(payload);
  const variants: Array<[string, (b: Uint8Array) => void]> = [
    ['a 4 KiB sector zeroed', (b) => b.fill(0, 8192, 12288)],
    ['the tail torn off (zeros)', (b) => b.fill(0, 397_312)],
    [
      'two 4 KiB blocks swapped',
      (b) => {
        const first = b.slice(0, 4096);
        b.copyWithin(0, 4096, 8192);
        b.set(first, 4096);
      },
    ],
    ['one bit flipped', (b) => (b[123_457] = (b[123_457] as number) ^ 0x10)],
    // Fletcher mod 2^32 misses this pair: top bits of two same-lane words, an even distance apart.
    [
      'top bits of two same-lane words flipped in opposite directions',
      (b) => {
        b[3] = (b[3] as number) ^ 0x80;
        b[35] = (b[35] as number) ^ 0x80;
      },
    ],
  ];
  for (const [what, damage] of variants) {
    const bytes = payload.slice();
    damage(bytes);
    assert.notDeepEqual(bytes, payload, `${what}: the damage changed something`);
    assert.notEqual(sums.of(bytes), good, what);
    assert.equal(sums.of(bytes), reference(bytes), `${what}: kernel and reference agree`);
  }
  // The length is part of it: a payload and the same payload with zeros appended differ.
  const longer = new Uint8Array(payload.length + 4);
  longer.set(payload);
  assert.notEqual(sums.of(longer), good);
});
