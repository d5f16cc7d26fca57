import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { SecAggError } from './errors.ts';
import { combineShares, SHAMIR_PRIME, type Share, splitSecret } from './shamir.ts';

const rnd = (n: number) => new Uint8Array(randomBytes(n));
const reason = (r: string) => (e: unknown) => e instanceof SecAggError && e.reason === r;

function subsets<T>(items: readonly T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (items.length < k) return [];
  const [head, ...rest] = items as [T, ...T[]];
  return [...subsets(rest, k - 1).map((s) => [head, ...s]), ...subsets(rest, k)];
}

/** Independent primality check of the field modulus: Miller–Rabin with the first 13 prime bases. */
function millerRabin(n: bigint): boolean {
  const pow = (b: bigint, e: bigint) => {
    let r = 1n;
    let x = b % n;
    for (let k = e; k > 0n; k >>= 1n) {
      if (k & 1n) r = (r * x) % n;
      x = (x * x) % n;
    }
    return r;
  };
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  for (const a of [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n, 41n]) {
    let x = pow(a, d);
    if (x === 1n || x === n - 1n) continue;
    let witness = true;
    for (let i = 1; i < s && witness; i++) {
      x = (x * x) % n;
      if (x === n - 1n) witness = false;
    }
    if (witness) return false;
  }
  return true;
}

test('the field modulus is prime and exceeds every 32-byte secret', () => {
  assert.equal(SHAMIR_PRIME, 2n ** 256n + 297n);
  assert.ok(millerRabin(SHAMIR_PRIME));
  // 297 is the smallest prime offset, so 2^256 + 295 is composite: the check can say no.
  assert.ok(!millerRabin(2n ** 256n + 295n));
});

test('any t of n shares reconstruct the secret', () => {
  const secret = rnd(32);
  const shares = splitSecret(secret, [1, 2, 3, 4, 5, 6, 7], 4, rnd);
  for (const subset of subsets(shares, 4)) assert.deepEqual(combineShares(subset, 4), secret);
  // All seven also work, and order does not matter.
  assert.deepEqual(combineShares([...shares].reverse(), 4), secret);
});

test('extreme secrets (all zeros, all 0xff) survive the round trip', () => {
  for (const secret of [new Uint8Array(32), new Uint8Array(32).fill(0xff)]) {
    const shares = splitSecret(secret, [3, 9, 27], 2, rnd);
    assert.deepEqual(combineShares(shares.slice(1), 2), secret);
  }
});

test('threshold 2 shares lie on a line through the secret (independent check)', () => {
  const secret = rnd(32);
  const [a, b] = splitSecret(secret, [1, 2], 2, rnd) as [Share, Share];
  // f(x) = s + c·x: f(2) − f(1) = c, so s = 2·f(1) − f(2) mod p.
  const s = (((2n * a.y - b.y) % SHAMIR_PRIME) + SHAMIR_PRIME) % SHAMIR_PRIME;
  assert.equal(s, BigInt(`0x${Buffer.from(secret).toString('hex')}`));
});

test('t − 1 shares are refused, and with a guessed share give a wrong secret', () => {
  const secret = rnd(32);
  const shares = splitSecret(secret, [1, 2, 3, 4, 5], 3, rnd);
  assert.throws(() => combineShares(shares.slice(0, 2), 3), reason('BELOW_THRESHOLD'));
  const guess: Share = { x: 5, y: 12345n };
  let recovered: Uint8Array | null = null;
  try {
    recovered = combineShares([...shares.slice(0, 2), guess], 3);
  } catch (e) {
    assert.ok(reason('INVALID_SHARE')(e));
  }
  if (recovered !== null) assert.notDeepEqual(recovered, secret);
});

test('a single share of a t = 2 secret is uniform: its low byte passes a chi-square test', () => {
  // Same secret every time: if the share leaked it, the low byte would concentrate.
  const secret = new Uint8Array(32).fill(7);
  const counts = new Array<number>(16).fill(0);
  const trials = 3200;
  for (let i = 0; i < trials; i++) {
    const [s] = splitSecret(secret, [1, 2], 2, rnd) as [Share];
    counts[Number(s.y & 15n)] = (counts[Number(s.y & 15n)] as number) + 1;
  }
  const expected = trials / 16;
  const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
  // 15 degrees of freedom: P(chi2 > 37.7) = 0.001.
  assert.ok(chi2 < 37.7, `chi2 = ${chi2}`);
});

test('a corrupted share is detected when more than t shares are given', () => {
  const secret = rnd(32);
  const shares = splitSecret(secret, [1, 2, 3, 4, 5, 6], 3, rnd);
  const corrupted = shares.map((s, i) => (i === 4 ? { x: s.x, y: (s.y + 1n) % SHAMIR_PRIME } : s));
  assert.throws(() => combineShares(corrupted, 3), reason('INVALID_SHARE'));
  // Exactly t shares cannot be cross-checked, but the extra ones can.
  assert.deepEqual(combineShares(shares.slice(0, 4), 3), secret);
});

test('malformed shares and arguments are rejected', () => {
  const shares = splitSecret(rnd(32), [1, 2, 3], 2, rnd);
  const [a, b] = shares as [Share, Share];
  assert.throws(() => combineShares([a, { x: a.x, y: b.y }], 2), reason('INVALID_SHARE'));
  assert.throws(() => combineShares([a, { x: 2, y: SHAMIR_PRIME }], 2), reason('INVALID_SHARE'));
  assert.throws(() => combineShares([a, { x: 0, y: 1n }], 2), reason('INVALID_SHARE'));
  assert.throws(() => splitSecret(rnd(31), [1, 2], 2, rnd), reason('INVALID_SHARE'));
  assert.throws(() => splitSecret(rnd(32), [1, 1], 2, rnd), reason('INVALID_SHARE'));
  assert.throws(() => splitSecret(rnd(32), [1, 2], 3, rnd), reason('INVALID_SHARE'));
  assert.throws(() => splitSecret(rnd(32), [0, 2], 2, rnd), reason('INVALID_SHARE'));
});
