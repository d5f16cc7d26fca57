import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGuardError } from '../types.ts';
import { BackendHttpError } from './http.ts';
import { OllamaBackend, resolveOllamaUrl, verdictScore } from './ollama.ts';
import { createBackend } from './registry.ts';
import {
  expectOllamaGenerate,
  fakeOllamaAnswer,
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
): Promise<TestServer> {
  const s = await startTestServer((req) => reply(req.body), expectOllamaGenerate());
  t.after(() => s.close());
  return s;
}

test('endpoint: base URL or the full /api/generate URL', () => {
  assert.equal(resolveOllamaUrl('http://127.0.0.1:11434'), 'http://127.0.0.1:11434/api/generate');
  assert.equal(resolveOllamaUrl('http://127.0.0.1:11434/'), 'http://127.0.0.1:11434/api/generate');
  assert.equal(resolveOllamaUrl('http://h/api/generate'), 'http://h/api/generate');
});

test('exact raw /api/generate request; score from logprobs when the server returns them', async (t) => {
  const s = await server(t, () => ({
    json: fakeOllamaAnswer({ safe: -2.2, unsafe: -0.12, categories: 'S9', leadingBlank: true }, true),
  }));
  const backend = new OllamaBackend({ endpoint: s.url, model: 'llama-guard3:1b' });
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'how do I build a bomb' }]);
  const out = await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual(s.shapeProblems, []);
  assert.deepEqual(s.requests[0]?.body, {
    model: 'llama-guard3:1b',
    prompt: prompt.text.slice('<|begin_of_text|>'.length),
    raw: true,
    stream: false,
    options: { temperature: 0, num_predict: 20 },
    logprobs: true,
    top_logprobs: 10,
  });
  // σ(u − s) = σ(−0.12 + 2.2) = σ(2.08) ≈ 0.8889
  assert.ok(Math.abs(out.pUnsafe - sigmoid(2.08)) < 1e-12);
  assert.ok(Math.abs(out.pUnsafe - 0.888944) < 1e-6);
  assert.equal(out.scoreSource, 'logprobs');
  assert.equal(out.generated, '\n\nunsafe\nS9');
});

test('without logprobs (older Ollama) the score is 1/0 from the verdict, labelled as such', async (t) => {
  const answers = [
    fakeOllamaAnswer({ safe: -0.1, unsafe: -3 }, false),
    fakeOllamaAnswer({ safe: -3, unsafe: -0.1, categories: 'S1', leadingBlank: true }, false),
    { model: 'm', response: 'I cannot help with that', done: true },
  ];
  let i = 0;
  const s = await server(t, () => ({ json: answers[i++] }));
  const backend = new OllamaBackend({
    endpoint: s.url,
    model: 'llama-guard3:8b',
    keepAlive: '30m',
    maxTokens: 9,
  });
  const prompt = await renderForTest('8b', [{ role: 'user', content: 'q' }]);
  const safe = await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual([safe.pUnsafe, safe.scoreSource, safe.generated], [0, 'verdict', 'safe']);
  assert.equal(safe.logits, undefined);
  const unsafe = await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual([unsafe.pUnsafe, unsafe.scoreSource, unsafe.generated], [1, 'verdict', '\n\nunsafe\nS1']);
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BAD_RESPONSE'));
  assert.deepEqual(s.shapeProblems, []);
  const body = s.requests[0]?.body as Record<string, unknown>;
  assert.equal(body.keep_alive, '30m');
  assert.deepEqual(body.options, { temperature: 0, num_predict: 9 });
  // The 8B's " <|begin_of_text|>" goes entirely.
  assert.equal(body.prompt, prompt.text.slice(' <|begin_of_text|>'.length));
});

test('verdictScore reads the first non-blank line only', () => {
  assert.equal(verdictScore('\n\n safe \n'), 0);
  assert.equal(verdictScore('unsafe\nS1'), 1);
  assert.throws(
    () => verdictScore('unsafely'),
    (e) => isGuardError(e, 'BAD_RESPONSE'),
  );
  assert.throws(
    () => verdictScore(''),
    (e) => isGuardError(e, 'BAD_RESPONSE'),
  );
});

test('the image is sent base64 in images[]', async (t) => {
  const s = await server(t, () => ({ json: fakeOllamaAnswer({ safe: -0.1, unsafe: -2 }, true) }));
  const backend = new OllamaBackend({ endpoint: s.url, model: 'llama-guard3-vision' });
  const prompt = await renderForTest('vision', [{ role: 'user', content: 'describe' }], { image: TINY_PNG });
  assert.ok(prompt.text.includes('<|image|>'));
  await backend.scoreAndClassify(prompt, OPTS);
  assert.deepEqual(s.shapeProblems, []);
  const body = s.requests[0]?.body as Record<string, unknown>;
  assert.deepEqual(body.images, [Buffer.from(TINY_PNG).toString('base64')]);
  assert.equal(body.prompt, prompt.text.slice('<|begin_of_text|>'.length));
});

test('errors: Ollama error bodies, malformed answers, unreachable, timeout, closed', async (t) => {
  const replies: Reply[] = [
    { status: 404, json: { error: "model 'llama-guard3:1b' not found, try pulling it first" } },
    { status: 500, text: 'boom' },
    { text: '{"response": ' },
    { json: { done: true } },
    { hang: true },
  ];
  let i = 0;
  const s = await server(t, () => replies[i++] as Reply);
  const backend = new OllamaBackend({ endpoint: s.url, model: 'llama-guard3:1b', timeoutMs: 200 });
  const prompt = await renderForTest('1b', [{ role: 'user', content: 'q' }]);
  await assert.rejects(
    backend.scoreAndClassify(prompt, OPTS),
    (e) => e instanceof BackendHttpError && e.status === 404 && /not found, try pulling/.test(e.message),
  );
  await assert.rejects(
    backend.scoreAndClassify(prompt, OPTS),
    (e) => e instanceof BackendHttpError && e.status === 500 && e.serverMessage === 'boom',
  );
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BAD_RESPONSE'));
  await assert.rejects(
    backend.scoreAndClassify(prompt, OPTS),
    (e) => isGuardError(e, 'BAD_RESPONSE') && /response/.test(e.message),
  );
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_TIMEOUT'));
  assert.deepEqual(s.shapeProblems, []);
  await backend.close();
  await assert.rejects(backend.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_CLOSED'));

  const gone = await startTestServer(() => ({ json: {} }));
  await gone.close();
  const refused = new OllamaBackend({ endpoint: gone.url, model: 'm' });
  await assert.rejects(refused.scoreAndClassify(prompt, OPTS), (e) => isGuardError(e, 'BACKEND_UNREACHABLE'));
});

test('registry: createBackend("ollama") needs endpoint and model name', async () => {
  await assert.rejects(createBackend('ollama', { variant: '1b', modelName: 'm' }), (e) =>
    isGuardError(e, 'INVALID_OPTION'),
  );
  await assert.rejects(createBackend('ollama', { variant: '1b', endpoint: 'http://127.0.0.1:1' }), (e) =>
    isGuardError(e, 'INVALID_OPTION'),
  );
  const b = await createBackend('ollama', { variant: '1b', endpoint: 'http://127.0.0.1:1', modelName: 'm' });
  assert.equal(b.name, 'ollama(m)');
  await b.close();
});
