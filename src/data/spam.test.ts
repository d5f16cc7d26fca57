import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BagHasher, fnv1a, loadSpam, MAX_TOKEN_LENGTH, messageText } from './spam.ts';

test('fnv1a matches the published FNV-1a 32-bit test vectors', () => {
  assert.equal(fnv1a(''), 0x811c9dc5);
  assert.equal(fnv1a('a'), 0xe40c292c);
  assert.equal(fnv1a('foobar'), 0xbf9cf968);
});

/** Naive reference: regex tokenizer, string n-grams, Map counts. */
function naiveBag(text: string, buckets: number): Map<number, number> {
  const out = new Map<number, number>();
  const bump = (s: string) => {
    const id = fnv1a(s) % buckets;
    out.set(id, (out.get(id) ?? 0) + 1);
  };
  let prev: string | null = null;
  for (const tok of text.toLowerCase().split(/[^a-z0-9]+/)) {
    if (tok === '') continue;
    if (tok.length > MAX_TOKEN_LENGTH) {
      prev = null;
      continue;
    }
    bump(tok);
    if (prev !== null) bump(`${prev} ${tok}`);
    prev = tok;
  }
  return out;
}

test('BagHasher agrees with a naive string implementation', () => {
  const text = `Hello, WORLD! hello world... Caf\u00e9 42 x${'q'.repeat(50)} after-break FREE free FREE money`;
  for (const buckets of [7, 1 << 20]) {
    const { ids, weights } = new BagHasher(buckets).bag(text);
    const expected = naiveBag(text, buckets);
    assert.equal(ids.length, expected.size);
    for (let t = 0; t < ids.length; t++) {
      assert.equal(weights[t], expected.get(ids[t] as number));
      if (t > 0) assert.ok((ids[t] as number) > (ids[t - 1] as number));
    }
  }
  assert.equal(new BagHasher(16).bag('').ids.length, 0);
  assert.throws(() => new BagHasher(0), { code: 'INVALID_ARGUMENT' });
});

test('messageText keeps Subject and body, drops other headers', () => {
  const raw = 'From: a@b.c\r\nSubject: Cheap pills\r\nX-Spam: yes\r\n\r\nBuy now\r\n';
  const t = messageText(raw);
  assert.match(t, /Cheap pills/);
  assert.match(t, /Buy now/);
  assert.doesNotMatch(t, /X-Spam|a@b/);
});

test('loadSpam: 6,046 messages, 1,896 spam (README group sizes), bags valid, cached', () => {
  const start = Date.now();
  const d = loadSpam(4096);
  const ms = Date.now() - start;
  assert.equal(d.n, 6046);
  // README: spam-1 500 + spam-2 1396 spam; easy-ham-1 2500 + easy-ham-2 1400 + hard-ham-1 250 ham.
  assert.equal(
    d.y.reduce((a, v) => a + v, 0),
    1896,
  );
  assert.equal(d.offsets.length, 6047);
  assert.equal(d.offsets[6046], d.ids.length);
  let empty = 0;
  for (let i = 0; i < d.n; i++) if (d.offsets[i + 1] === d.offsets[i]) empty++;
  assert.ok(empty < 10, `${empty} empty messages`);
  for (const id of d.ids) assert.ok(id >= 0 && id < 4096);
  assert.ok((d.weights ?? []).every((w) => w >= 1));
  assert.equal(loadSpam(4096), d);
  console.log(`loadSpam(4096): ${ms} ms, ${d.ids.length} (id, count) pairs`);
});
