/**
 * `orchard guard serve` end to end in process: moderation server → Guard → OpenAI-compatible
 * backend → the test server playing the model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../core/errors.ts';
import {
  expectOpenAiChat,
  fakeOpenAiChatAnswer,
  requestText,
  startTestServer,
} from '../../guard/backends/testing-server.ts';
import { runGuardServe } from './guard-serve.ts';

test('serves /v1/moderations until stopped, then closes', async (t) => {
  const model = await startTestServer(
    (req) => ({
      json: fakeOpenAiChatAnswer(
        /hate them/.test(requestText(req.body))
          ? { safe: -3, unsafe: -0.05, categories: 'S10' }
          : { safe: -0.05, unsafe: -3 },
      ),
    }),
    expectOpenAiChat(),
  );
  t.after(() => model.close());
  let out = '';
  let err = '';
  const stop = new AbortController();
  const running = runGuardServe(
    {
      port: 0,
      host: '127.0.0.1',
      endpoint: `${model.url}/v1`,
      modelName: 'meta-llama/Llama-Guard-3-8B',
      variant: '8b',
      name: 'lg3-8b',
    },
    { out: (s) => (out += s), err: (s) => (err += s) },
    stop.signal,
  );
  const deadline = Date.now() + 10_000;
  while (!out.includes('/v1/moderations') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const url = /POST (\S+)/.exec(out)?.[1];
  assert.ok(url, `no URL printed: ${out}`);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: ['I hate them all', 'good morning'] }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as {
    model: string;
    results: Array<{
      flagged: boolean;
      categories: Record<string, boolean>;
      category_scores: Record<string, number>;
    }>;
  };
  assert.equal(body.model, 'lg3-8b');
  assert.deepEqual(
    body.results.map((r) => [r.flagged, r.categories.S10, r.categories.hate, r.categories.S14]),
    [
      [true, true, true, false],
      [false, false, false, false],
    ],
  );
  // σ(−0.05 + 3) = σ(2.95)
  assert.ok(Math.abs((body.results[0]?.category_scores.hate ?? 0) - 1 / (1 + Math.exp(-2.95))) < 1e-12);
  stop.abort();
  await running;
  assert.match(err, /stopped/);
  await assert.rejects(fetch(url, { method: 'POST', body: '{}' }));
  assert.deepEqual(model.shapeProblems, []);
});

test('missing backend flags are usage errors', async () => {
  await assert.rejects(
    runGuardServe(
      { port: 0, host: '127.0.0.1' },
      { out: () => {}, err: () => {} },
      new AbortController().signal,
    ),
    ConfigError,
  );
});
