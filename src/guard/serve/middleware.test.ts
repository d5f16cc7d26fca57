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
  await assert.rejects(guardText.check('x', { response: true }), TypeError);
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
  assert.throws(
    () => createGuardMiddleware(new Guard({ backend: new FakeGuardBackend() }), { concurrency: 0 }),
    TypeError,
  );
});
