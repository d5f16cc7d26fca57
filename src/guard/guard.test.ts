import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Guard } from './guard.ts';
import { FakeGuardBackend, TINY_PNG } from './testing/fake-backend.ts';
import { GuardError } from './types.ts';

const code = (c: string) => (e: unknown) => e instanceof GuardError && e.code === c;
// The fake's logits are (safe 0, unsafe ±4): P(unsafe) = 1/(1+e^∓4).
const P_TRIGGERED = 1 / (1 + Math.exp(-4)); // 0.98201379...
const P_CLEAN = 1 / (1 + Math.exp(4)); // 0.01798620...

describe('Guard.check', () => {
  it('prompt classification: score from the logits, categories from generation only when unsafe', async () => {
    const backend = new FakeGuardBackend();
    const guard = new Guard({ backend });
    const bad = await guard.check('How do I kill the lights and build a bomb?');
    assert.equal(bad.safe, false);
    assert.ok(Math.abs(bad.score - P_TRIGGERED) < 1e-12);
    assert.deepEqual(bad.categories, ['S1', 'S9']);
    assert.equal(backend.generations, 1);
    const good = await guard.check('What is a good name for a llama?');
    assert.equal(good.safe, true);
    assert.ok(Math.abs(good.score - P_CLEAN) < 1e-12);
    assert.deepEqual(good.categories, []);
    assert.equal(backend.generations, 1, 'a safe verdict must not run the category generation');
  });

  it('response classification judges the agent turn', async () => {
    const guard = new Guard({ backend: new FakeGuardBackend() });
    const r = await guard.check('How can I adopt a llama?', { response: 'Go to the zoo and steal one!' });
    assert.deepEqual([r.safe, r.categories], [false, ['S2']]);
    const prompt = await guard.render('How can I adopt a llama?', {
      response: 'Go to the zoo and steal one!',
    });
    assert.equal(prompt.classifiedRole, 'agent');
  });

  it('the threshold moves the decision without re-running anything else', async () => {
    const strict = new Guard({ backend: new FakeGuardBackend(), threshold: 0.01 });
    const r = await strict.check('a harmless question');
    assert.equal(r.safe, false); // 0.018 >= 0.01
    assert.deepEqual(r.categories, []);
    const lax = new Guard({ backend: new FakeGuardBackend(), threshold: 0.99 });
    assert.equal((await lax.check('kill')).safe, true); // 0.982 < 0.99
  });

  it('excluded categories are neither prompted nor reported', async () => {
    const backend = new FakeGuardBackend();
    const guard = new Guard({ backend, excluded: ['S1'] });
    const r = await guard.check('bomb');
    assert.deepEqual(r.categories, ['S9']);
    assert.ok(!(backend.prompts[0]?.text.includes('S1: Violent Crimes.') ?? true));
  });

  it('reports unknown codes and keeps known ones', async () => {
    const guard = new Guard({ backend: new FakeGuardBackend({ output: () => '\n\nunsafe\nS14,S1,S15' }) });
    const r = await guard.check('kill');
    assert.deepEqual(r.categories, ['S1']);
    assert.deepEqual(r.unknownCategories, ['S14', 'S15']); // the 1B policy has no S14
    assert.equal(r.raw, '\n\nunsafe\nS14,S1,S15');
  });

  it('custom categories replace the list', async () => {
    const backend = new FakeGuardBackend({ rules: { secret: ['C1'] }, output: () => 'unsafe\nC1' });
    const guard = new Guard({
      backend,
      categories: [{ code: 'C1', name: 'Secrets', description: 'Internal codenames.' }],
    });
    const r = await guard.check('tell me the secret');
    assert.deepEqual(r.categories, ['C1']);
    assert.ok(
      backend.prompts[0]?.text.includes(
        '<BEGIN UNSAFE CONTENT CATEGORIES>\nC1: Secrets.\nInternal codenames.\n<END',
      ),
    );
  });

  it('bad backend output and failures surface as typed errors', async () => {
    await assert.rejects(
      new Guard({ backend: new FakeGuardBackend({ output: () => 'I cannot answer' }) }).check('kill'),
      code('BAD_RESPONSE'),
    );
    await assert.rejects(
      new Guard({ backend: new FakeGuardBackend({ pUnsafe: () => 1.5 }) }).check('x'),
      code('BAD_RESPONSE'),
    );
    await assert.rejects(
      new Guard({ backend: new FakeGuardBackend({ pUnsafe: () => Number.NaN }) }).check('x'),
      code('BAD_RESPONSE'),
    );
    const down = new FakeGuardBackend({ fail: new GuardError('BACKEND_UNREACHABLE', 'connection refused') });
    await assert.rejects(new Guard({ backend: down }).check('x'), code('BACKEND_UNREACHABLE'));
    const slow = new FakeGuardBackend({ delayMs: 500 });
    await assert.rejects(new Guard({ backend: slow, timeoutMs: 20 }).check('x'), code('BACKEND_TIMEOUT'));
  });

  it('bad input fails before the backend is called', async () => {
    const backend = new FakeGuardBackend();
    const guard = new Guard({ backend });
    await assert.rejects(guard.check(''), code('EMPTY_CONVERSATION'));
    await assert.rejects(guard.check([]), code('EMPTY_CONVERSATION'));
    await assert.rejects(guard.check([{ role: 'assistant', content: 'hi' }]), code('ROLE_ORDER'));
    await assert.rejects(guard.check('x', { image: TINY_PNG }), code('IMAGE_UNSUPPORTED'));
    const vision = new Guard({ backend, variant: 'vision' });
    await assert.rejects(vision.check('x', { image: TINY_PNG }), code('IMAGE_UNSUPPORTED')); // backend lacks vision
    await assert.rejects(
      vision.check('x', { image: new Uint8Array([0x47, 0x49, 0x46, 0x38]) }),
      code('IMAGE_TYPE'),
    );
    assert.equal(backend.calls, 0);
  });

  it('validates its options', () => {
    const backend = new FakeGuardBackend();
    assert.throws(() => new Guard({ backend, threshold: 2 }), code('INVALID_OPTION'));
    assert.throws(() => new Guard({ backend, variant: '70b' as never }), code('INVALID_OPTION'));
    assert.throws(() => new Guard({ backend, excluded: ['S14'] }), code('UNKNOWN_CATEGORY'));
    assert.throws(() => new Guard({ backend, timeoutMs: 0 }), code('INVALID_OPTION'));
    assert.throws(() => new Guard({} as never), code('INVALID_OPTION'));
    // Limits are refused at construction, not at the first request that carries an image.
    for (const maxImageBytes of [0, -1, 1.5, Number.NaN])
      assert.throws(() => new Guard({ backend, maxImageBytes }), code('INVALID_OPTION'));
    assert.throws(() => new Guard({ backend, specialTokens: 'yes' as never }), code('INVALID_OPTION'));
    assert.doesNotThrow(() => new Guard({ backend, variant: '8b', excluded: ['S14'] }));
  });

  it('vision: one image with a vision backend', async () => {
    const backend = new FakeGuardBackend({ vision: true });
    const guard = new Guard({ backend, variant: 'vision' });
    const r = await guard.check('Is this picture fine?', {
      image: { base64: Buffer.from(TINY_PNG).toString('base64') },
    });
    assert.equal(r.safe, true);
    assert.equal(backend.prompts[0]?.image?.mime, 'image/png');
    assert.ok(backend.prompts[0]?.text.includes('<|end_header_id|>\n\n<|image|> Task:'));
  });
});

describe('Guard.checkMany', () => {
  it('keeps input order and caps concurrency', async () => {
    const backend = new FakeGuardBackend({ delayMs: 20 });
    const guard = new Guard({ backend });
    const inputs = ['kill', 'hello', { input: 'q', response: 'steal it' }, 'fine', 'bomb'];
    const rs = await guard.checkMany(inputs, { concurrency: 2 });
    assert.deepEqual(
      rs.map((r) => r.categories),
      [['S1'], [], ['S2'], [], ['S9', 'S1']],
    );
    assert.equal(backend.maxInFlight, 2);
  });

  it('uses the backend batch path when there is one', async () => {
    const backend = new FakeGuardBackend({ batch: true });
    const rs = await new Guard({ backend }).checkMany(['kill', 'hello']);
    assert.equal(backend.batchCalls, 1);
    assert.deepEqual(
      rs.map((r) => r.safe),
      [false, true],
    );
  });

  it('is fail-fast on a backend failure: no request is sent after it', async () => {
    const fail = new GuardError('BACKEND_UNREACHABLE', 'down');
    const backend = new FakeGuardBackend({
      delayMs: 10,
      pUnsafe: (p) => {
        if (JSON.stringify(p.messages).includes('first')) throw fail;
        return 0.01;
      },
    });
    const inputs = ['first', ...Array.from({ length: 20 }, (_, i) => `fine ${i}`)];
    await assert.rejects(new Guard({ backend }).checkMany(inputs, { concurrency: 2 }), (e) => e === fail);
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(backend.calls <= 3, `requests sent: ${backend.calls}`);
  });

  it('refuses a bad concurrency before any work, batch path or not', async () => {
    for (const batch of [false, true]) {
      const backend = new FakeGuardBackend({ batch });
      for (const concurrency of [0, -2, 2.5])
        await assert.rejects(
          new Guard({ backend }).checkMany(['a'], { concurrency }),
          code('INVALID_OPTION'),
        );
      assert.equal(backend.calls, 0);
    }
    await assert.rejects(
      new Guard({ backend: new FakeGuardBackend() }).checkMany('a' as never),
      code('INVALID_OPTION'),
    );
    assert.deepEqual(await new Guard({ backend: new FakeGuardBackend() }).checkMany([]), []);
  });

  it('one bad input fails the batch before any model work', async () => {
    const backend = new FakeGuardBackend();
    await assert.rejects(
      new Guard({ backend }).checkMany(['ok', [{ role: 'assistant', content: 'x' }]]),
      code('ROLE_ORDER'),
    );
    assert.equal(backend.calls, 0);
  });
});
