import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Guard } from '../guard.ts';
import { FakeGuardBackend } from '../testing/fake-backend.ts';
import { GuardError, type GuardResult } from '../types.ts';
import { ContentBlockedError, createGuardMiddleware } from './middleware.ts';

// Fake rules: "kill" → S1, "steal" → S2, "bomb" → S9,S1.
test('passes safe text through unchanged and blocks unsafe text with the verdict', async () => {
  const seen: Array<[unknown, GuardResult]> = [];
  const guardText = createGuardMiddleware(new Guard({ backend: new FakeGuardBackend() }), {
    onResult: (input, result) => seen.push([input, result]),
  });
  assert.equal(await guardText('Write a poem about spring'), 'Write a poem about spring');
  await assert.rejects(guardText('how to steal a car'), (e) => {
    assert.ok(e instanceof ContentBlockedError);
    assert.equal(e.code, 'CONTENT_BLOCKED');
    assert.deepEqual(e.result.categories, ['S2']);
    assert.match(e.message, /\(S2\)/);
    return true;
  });
  assert.equal(seen.length, 2);
  assert.equal(seen[0]?.[1].safe, true);
  const conv = [{ role: 'user' as const, content: 'hello' }];
  assert.equal(await guardText(conv), conv);
});

test('response mode judges the reply in context', async () => {
  const backend = new FakeGuardBackend();
  const guardText = createGuardMiddleware(new Guard({ backend }));
  const r = await guardText.check('Sure: first, kill the guard dog', {
    response: true,
    context: 'How do I get in?',
  });
  assert.equal(r.safe, false);
  assert.equal(backend.prompts[0]?.classifiedRole, 'agent');
  const invalidOption = (e: unknown) => e instanceof GuardError && e.code === 'INVALID_OPTION';
  await assert.rejects(guardText.check('x', { response: true }), invalidOption);
  await assert.rejects(guardText('x', { response: true, context: 42 as unknown as string }), invalidOption);
  assert.equal(backend.calls, 1);
});

test('filter keeps safe items in order and reports the blocked ones', async () => {
  const backend = new FakeGuardBackend({ delayMs: 5 });
  const guardText = createGuardMiddleware(new Guard({ backend }), { concurrency: 3 });
  const samples = ['a sunny day', 'kill it', 'bake bread', 'steal this', 'plant trees', 'bomb threat'].map(
    (text, id) => ({
      id,
      text,
    }),
  );
  const { kept, blocked } = await guardText.filter(samples, (s) => s.text);
  assert.deepEqual(
    kept.map((s) => s.id),
    [0, 2, 4],
  );
  assert.deepEqual(
    blocked.map((b) => [b.item.id, b.result.categories]),
    [
      [1, ['S1']],
      [3, ['S2']],
      [5, ['S9', 'S1']],
    ],
  );
  assert.ok(backend.maxInFlight <= 3 && backend.maxInFlight >= 2, `in flight ${backend.maxInFlight}`);
});

test('a failing guard blocks by default; onError "allow" lets text through and reports it', async () => {
  const fail = new GuardError('BACKEND_UNREACHABLE', 'down');
  const closed = createGuardMiddleware(new Guard({ backend: new FakeGuardBackend({ fail }) }));
  await assert.rejects(closed('anything'), (e) => e === fail);
  await assert.rejects(
    closed.filter(['a'], (s) => s),
    (e) => e === fail,
  );
  const errors: unknown[] = [];
  const open = createGuardMiddleware(new Guard({ backend: new FakeGuardBackend({ fail }) }), {
    onError: 'allow',
    reportError: (_input, e) => errors.push(e),
  });
  assert.equal(await open('anything'), 'anything');
  assert.deepEqual((await open.filter(['a', 'b'], (s) => s)).kept, ['a', 'b']);
  assert.equal(errors.length, 3);
  for (const bad of [{ concurrency: 0 }, { concurrency: 1.5 }, { onError: 'ignore' as 'allow' }])
    assert.throws(
      () => createGuardMiddleware(new Guard({ backend: new FakeGuardBackend() }), bad),
      (e) => e instanceof GuardError && e.code === 'INVALID_OPTION',
      JSON.stringify(bad),
    );
});

test('filter under onError "block" is fail-fast: no item is checked after the first failure', async () => {
  // The first item's check fails after 10 ms while the other slot is busy with a good one; the
  // remaining 28 items must never be sent.
  const fail = new GuardError('BACKEND_UNREACHABLE', 'down');
  const backend = new FakeGuardBackend({
    delayMs: 10,
    pUnsafe: (p) => {
      if (JSON.stringify(p.messages).includes('item 0')) throw fail;
      return 0.01;
    },
  });
  const results: unknown[] = [];
  const guardText = createGuardMiddleware(new Guard({ backend }), {
    concurrency: 2,
    onResult: (_i, r) => results.push(r),
  });
  const items = Array.from({ length: 30 }, (_, i) => `item ${i}`);
  await assert.rejects(
    guardText.filter(items, (s) => s),
    (e) => e === fail,
  );
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(backend.calls <= 3, `checks sent after the failure: ${backend.calls}`);
  assert.ok(results.length <= 1, `verdicts after the failure: ${results.length}`);

  // The same failures under 'allow': every item is checked once, all kept, each error reported.
  const reported: unknown[] = [];
  const open = createGuardMiddleware(new Guard({ backend: new FakeGuardBackend({ fail }) }), {
    concurrency: 3,
    onError: 'allow',
    reportError: (input) => reported.push(input),
  });
  assert.deepEqual((await open.filter(items, (s) => s)).kept, items);
  assert.deepEqual([...reported].sort(), [...items].sort());
});
