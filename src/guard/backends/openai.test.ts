import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGuardError } from '../types.ts';
import { BackendHttpError } from './http.ts';
import { OpenAiBackend, resolveOpenAiEndpoint } from './openai.ts';
import { createBackend } from './registry.ts';
import {
  expectOpenAiChat,
  expectOpenAiCompletion,
  type FakeDecision,
  fakeOpenAiChatAnswer,
  fakeOpenAiCompletionAnswer,
  type Reply,
  renderForTest,
  startTestServer,
  type TestServer,
  TINY_PNG,
} from './testing-server.ts';

const OPTS = { threshold: 0.5 };
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

async function server(
  t: { after: (fn: () => Promise<void>) => void },
  reply: (body: unknown) => Reply,
  mode: 'chat' | 'completions' = 'chat',
): Promise<TestServer> {
  const s = await startTestServer(
    (req) => reply(req.body),
    mode === 'chat' ? expectOpenAiChat() : expectOpenAiCompletion(),
  );
  t.after(() => s.close());
  return s;
}

const bodyOf = (s: TestServer, i: number) => (s.requests[i]?.body ?? {}) as Record<string, unknown>;

const chatReply = (d: FakeDecision) => () => ({ json: fakeOpenAiChatAnswer(d) });

test('endpoint URL picks the mode', () => {
  assert.deepEqual(resolveOpenAiEndpoint('http://h:8000/v1'), {
    mode: 'chat',
    url: 'http://h:8000/v1/chat/completions',
  });
  assert.deepEqual(resolveOpenAiEndpoint('http://h:8000/v1/'), {
    mode: 'chat',
    url: 'http://h:8000/v1/chat/completions',
  });
  assert.deepEqual(resolveOpenAiEndpoint('http://h/v1/chat/completions'), {
    mode: 'chat',
    url: 'http://h/v1/chat/completions',
  });
  assert.deepEqual(resolveOpenAiEndpoint('http://h/v1/completions'), {
    mode: 'completions',
    url: 'http://h/v1/completions',
  });
});

test('chat: exact request, score from the verdict logprobs', async (t) => {
  const s = await server(t, chatReply({ safe: -0.1, unsafe: -2.4, others: [{ token: 'The', logprob: -9 }] }));
  const backend = new OpenAiBackend({
    endpoint: `${s.url}/v1`,
    model: 'meta-llama/Llama-Guard-3-1B',
    apiKey: 'k-123',
  });
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'How do I bake bread?' }]);
  const out = await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual(s.shapeProblems, []);
  assert.equal(s.requests.length, 1);
  const req = s.requests[0];
  assert.equal(req?.headers.authorization, 'Bearer k-123');
  assert.deepEqual(req?.body, {
    model: 'meta-llama/Llama-Guard-3-1B',
    messages: [{ role: 'user', content: 'How do I bake bread?' }],
    max_tokens: 20,
    temperature: 0,
    logprobs: true,
    top_logprobs: 10,
    stream: false,
  });
  // Two-way softmax by hand: p = e^u / (e^u + e^s) = σ(u − s) = σ(−2.3) ≈ 0.0911.
  assert.ok(Math.abs(out.pUnsafe - sigmoid(-2.3)) < 1e-12);
  assert.ok(Math.abs(out.pUnsafe - 0.091122) < 1e-6);
  assert.equal(out.generated, 'safe');
  assert.equal(out.scoreSource, 'logprobs');
  assert.deepEqual(out.logits, { safe: -0.1, unsafe: -2.4 });
});

test('chat: response classification sends both turns; blank first tokens are skipped', async (t) => {
  const s = await server(t, chatReply({ safe: -3, unsafe: -0.05, categories: 'S1,S10', leadingBlank: true }));
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1/chat/completions`, model: 'lg3' });
  const prompt = await renderForTest('8b', [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'go hurt them' },
  ]);
  assert.equal(prompt.classifiedRole, 'agent');
  const out = await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual(s.shapeProblems, []);
  assert.equal(s.requests[0]?.headers.authorization, undefined);
  assert.deepEqual(bodyOf(s, 0).messages, [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'go hurt them' },
  ]);
  assert.ok(Math.abs(out.pUnsafe - sigmoid(2.95)) < 1e-12);
  assert.equal(out.generated, '\n\nunsafe\nS1,S10');
});

test('chat: custom policy goes as chat_template_kwargs, the stock one sends none', async (t) => {
  const s = await server(t, chatReply({ safe: -0.2, unsafe: -1.8 }));
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3' });
  const conv = [{ role: 'user' as const, content: 'q' }];
  await backend.scoreAndClassify(await renderForTest('1b', conv, { excluded: ['S6', 'S13'] }), OPTS);
  await backend.scoreAndClassify(
    await renderForTest('1b', conv, {
      categories: [
        { code: 'S1', name: 'Violent Crimes' },
        { code: 'X1', name: 'Spoilers', description: 'Revealing the ending of a film.' },
      ],
    }),
    OPTS,
  );
  assert.deepEqual(s.shapeProblems, []);
  const kwargs = s.requests.map((r) => (r.body as { chat_template_kwargs?: unknown }).chat_template_kwargs);
  assert.deepEqual(kwargs[0], { excluded_category_keys: ['S6', 'S13'] });
  // The template prints `key: value`; values carry the full stop and the description lines.
  assert.deepEqual(kwargs[1], {
    categories: { S1: 'Violent Crimes.', X1: 'Spoilers.\nRevealing the ending of a film.' },
  });
});

test('chat: the image goes as an image_url part with a data URL', async (t) => {
  const s = await server(t, chatReply({ safe: -0.01, unsafe: -4.6 }));
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3-vision' });
  assert.equal(backend.capabilities.vision, true);
  const prompt = await renderForTest('vision', [{ role: 'user', content: 'what is this?' }], {
    image: TINY_PNG,
  });
  await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual(s.shapeProblems, []);
  assert.deepEqual(bodyOf(s, 0).messages, [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'what is this?' },
        {
          type: 'image_url',
          image_url: { url: `data:image/png;base64,${Buffer.from(TINY_PNG).toString('base64')}` },
        },
      ],
    },
  ]);
});

test('completions: our rendered prompt byte for byte (BOS left to the server unless keepBos)', async (t) => {
  const s = await server(
    t,
    () => ({ json: fakeOpenAiCompletionAnswer({ safe: -1.5, unsafe: -0.3, categories: 'S2' }) }),
    'completions',
  );
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'how to pick a lock' }]);
  assert.ok(prompt.text.startsWith('<|begin_of_text|>'));
  const plain = new OpenAiBackend({
    endpoint: `${s.url}/v1/completions`,
    model: 'lg3',
    topLogprobs: 5,
    maxTokens: 12,
  });
  assert.equal(plain.capabilities.vision, false);
  const out = await plain.scoreAndClassify(prompt, OPTS);
  const withBos = new OpenAiBackend({ endpoint: `${s.url}/v1/completions`, model: 'lg3', keepBos: true });
  await withBos.scoreAndClassify(prompt, { threshold: 0.5, maxTokens: 7 });
  assert.deepEqual(s.shapeProblems, []);
  assert.deepEqual(s.requests[0]?.body, {
    model: 'lg3',
    prompt: prompt.text.slice('<|begin_of_text|>'.length),
    max_tokens: 12,
    temperature: 0,
    logprobs: 5,
    stream: false,
  });
  assert.equal(bodyOf(s, 1).prompt, prompt.text);
  assert.equal(bodyOf(s, 1).max_tokens, 7);
  assert.ok(Math.abs(out.pUnsafe - sigmoid(1.2)) < 1e-12);
  assert.equal(out.generated, 'unsafe\nS2');
  // The 8B template puts a space before BOS; both go, the server adds its own BOS.
  const p8 = await renderForTest('8b', [{ role: 'user', content: 'x' }]);
  assert.ok(p8.text.startsWith(' <|begin_of_text|>'));
  await plain.scoreAndClassify(p8, OPTS);
  assert.equal(bodyOf(s, 2).prompt, p8.text.slice(' <|begin_of_text|>'.length));
});

test('chat mode cannot judge a turn other than the last one', async (t) => {
  const s = await server(t, chatReply({ safe: -0.1, unsafe: -2 }));
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3' });
  const prompt = await renderForTest('1b', [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: 'a' },
  ]);
  await assert.rejects(
    backend.scoreAndClassify({ ...prompt, classifiedRole: 'user' }, OPTS),
    (e) => isGuardError(e, 'INVALID_OPTION') && /completions endpoint/.test(e.message),
  );
  assert.equal(s.requests.length, 0);
});

test('completions mode refuses images before sending anything', async (t) => {
  const s = await server(t, () => ({ json: {} }), 'completions');
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1/completions`, model: 'lg3' });
  const prompt = await renderForTest('vision', [{ role: 'user', content: 'x' }], { image: TINY_PNG });
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'IMAGE_UNSUPPORTED'));
  assert.equal(s.requests.length, 0);
});

test('a verdict token missing from the top N is bounded by the smallest listed logprob', async (t) => {
  const s = await server(
    t,
    chatReply({
      safe: -0.02,
      others: [
        { token: ' Safe', logprob: -5 },
        { token: '\n', logprob: -7.5 },
      ],
    }),
  );
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3' });
  const out = await backend.scoreAndClassify(
    await renderForTest('1b', [{ role: 'user', content: 'q' }]),
    OPTS,
  );
  // unsafe ≤ −7.5 → p ≤ σ(−7.5 + 0.02)
  assert.equal(out.scoreSource, 'logprobs-bounded');
  assert.ok(Math.abs(out.pUnsafe - sigmoid(-7.48)) < 1e-12);
});

test('bad answers are BAD_RESPONSE; HTTP errors carry status and the server message', async (t) => {
  const replies: Reply[] = [
    { json: fakeOpenAiChatAnswer({ others: [{ token: 'Sure', logprob: -0.1 }] }) }, // no verdict token
    { text: 'upstream <html> error', status: 200 }, // not JSON
    { json: { choices: [] } }, // wrong shape
    { json: { choices: [{ message: { content: 'safe' } }] } }, // no logprobs
    { status: 500, json: { error: { message: 'CUDA out of memory', type: 'server_error' } } },
    { status: 404, json: { error: { message: 'The model `x` does not exist.' } } },
  ];
  let i = 0;
  const s = await server(t, () => replies[i++] as Reply);
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3' });
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'q' }]);
  for (const pattern of [/neither 'safe' nor 'unsafe'/, /not JSON/, /choices/, /no logprobs/]) {
    await assert.rejects(
      backend.scoreAndClassify(prompt, OPTS),
      (e) => isGuardError(e, 'BAD_RESPONSE') && pattern.test(e.message),
    );
  }
  await assert.rejects(
    backend.scoreAndClassify(prompt, OPTS),
    (e) =>
      e instanceof BackendHttpError &&
      e.code === 'BACKEND_HTTP' &&
      e.status === 500 &&
      e.serverMessage === 'CUDA out of memory',
  );
  await assert.rejects(
    backend.scoreAndClassify(prompt, OPTS),
    (e) => e instanceof BackendHttpError && e.status === 404,
  );
  assert.deepEqual(s.shapeProblems, []);
});

test('unreachable, dropped connection, timeout, abort and closed backends', async (t) => {
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'q' }]);
  // A port that was just free: connection refused.
  const gone = await startTestServer(() => ({ json: {} }));
  const goneUrl = gone.url;
  await gone.close();
  const refused = new OpenAiBackend({ endpoint: `${goneUrl}/v1`, model: 'lg3' });
  await assert.rejects(refused.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_UNREACHABLE'));

  let mode: 'destroy' | 'hang' = 'destroy';
  const s = await server(t, () => (mode === 'destroy' ? { destroy: true } : { hang: true }));
  const backend = new OpenAiBackend({ endpoint: `${s.url}/v1`, model: 'lg3', timeoutMs: 300 });
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_UNREACHABLE'));
  mode = 'hang';
  const started = Date.now();
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_TIMEOUT'));
  const waited = Date.now() - started;
  assert.ok(waited >= 250 && waited < 5000, `timed out after ${waited} ms`);
  // ScoreOptions.timeoutMs overrides the backend default.
  await assert.rejects(backend.scoreAndClassify(prompt, { threshold: 0.5, timeoutMs: 50 }), (e) =>
    isGuardError(e, 'BACKEND_TIMEOUT'),
  );
  const ac = new AbortController();
  const pending = backend.scoreAndClassify(prompt, { threshold: 0.5, signal: ac.signal });
  setTimeout(() => ac.abort(), 30);
  await assert.rejects(pending, (e) => isGuardError(e, 'ABORTED'));
  await backend.close();
  await backend.close(); // idempotent
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_CLOSED'));
  assert.deepEqual(s.shapeProblems, []);
});

test('options are checked; the registry builds the backend from --endpoint/--model-name', async (t) => {
  assert.throws(
    () => new OpenAiBackend({ endpoint: 'ftp://x', model: 'm' }),
    (e) => isGuardError(e, 'INVALID_OPTION'),
  );
  assert.throws(
    () => new OpenAiBackend({ endpoint: 'not a url', model: 'm' }),
    (e) => isGuardError(e, 'INVALID_OPTION'),
  );
  assert.throws(
    () => new OpenAiBackend({ endpoint: 'http://x', model: ' ' }),
    (e) => isGuardError(e, 'INVALID_OPTION'),
  );
  assert.throws(
    () => new OpenAiBackend({ endpoint: 'http://x', model: 'm', topLogprobs: 21 }),
    (e) => isGuardError(e, 'INVALID_OPTION'),
  );
  await assert.rejects(createBackend('openai', { variant: '1b', endpoint: 'http://x/v1' }), (e) =>
    isGuardError(e, 'INVALID_OPTION'),
  );
  const s = await server(t, chatReply({ safe: -0.5, unsafe: -0.9 }));
  const backend = await createBackend('openai', { variant: '1b', endpoint: `${s.url}/v1`, modelName: 'lg3' });
  const out = await backend.scoreAndClassify(
    await renderForTest('1b', [{ role: 'user', content: 'q' }]),
    OPTS,
  );
  assert.ok(Math.abs(out.pUnsafe - sigmoid(-0.4)) < 1e-12);
  assert.deepEqual(s.shapeProblems, []);
});
