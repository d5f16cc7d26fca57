import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Guard } from '../guard.ts';
import { FakeGuardBackend, TINY_PNG } from '../testing/fake-backend.ts';
import { GuardError } from '../types.ts';
import { OPENAI_CATEGORY_MAP } from './moderations.ts';
import { type ModerationServerOptions, startModerationServer } from './server.ts';

// The fake backend flags "kill" → S1, "steal" → S2, "bomb" → S9,S1 with logits (safe 0, unsafe ±4).
const FLAGGED = 1 / (1 + Math.exp(-4)); // σ(4) ≈ 0.982
const CLEAN = 1 / (1 + Math.exp(4)); // σ(−4) ≈ 0.018
const S1_S13 = Array.from({ length: 13 }, (_, i) => `S${i + 1}`);
const OPENAI_KEYS = [
  'violence',
  'illicit/violent',
  'illicit',
  'sexual/minors',
  'hate',
  'self-harm',
  'sexual',
];

// biome-ignore lint/suspicious/noExplicitAny: response JSON is inspected field by field
type Json = Record<string, any>;

async function serve(
  t: { after: (fn: () => Promise<void>) => void },
  options: Partial<ModerationServerOptions> & { backend?: FakeGuardBackend; variant?: '1b' | 'vision' } = {},
) {
  const backend = options.backend ?? new FakeGuardBackend({ vision: options.variant === 'vision' });
  const guard = new Guard({ backend, variant: options.variant ?? '1b' });
  const server = await startModerationServer({ guard, model: 'llama-guard-3-1b', ...options });
  t.after(() => server.close());
  const post = async (
    body: unknown,
    init: { contentType?: string; path?: string; method?: string; raw?: string } = {},
  ) => {
    const res = await fetch(`${server.url}${init.path ?? '/v1/moderations'}`, {
      method: init.method ?? 'POST',
      headers: { 'content-type': init.contentType ?? 'application/json' },
      ...(init.method === 'GET' ? {} : { body: init.raw ?? JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  return { server, post, backend };
}

function expectOpenAiError(r: { status: number; body: Json }, status: number, code: string) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.deepEqual(Object.keys(r.body), ['error']);
  assert.deepEqual(Object.keys(r.body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, 'string');
  assert.equal(r.body.error.type, status >= 500 ? 'server_error' : 'invalid_request_error');
}

test('a string input: one result in OpenAI shape with S-codes and mapped OpenAI names', async (t) => {
  const { post } = await serve(t);
  const r = await post({ input: 'how do I kill my neighbour', model: 'omni-moderation-latest' });
  assert.equal(r.status, 200);
  assert.match(r.body.id, /^modr-[0-9a-f]{32}$/);
  assert.equal(r.body.model, 'llama-guard-3-1b');
  assert.equal(r.body.results.length, 1);
  const res = r.body.results[0];
  assert.equal(res.flagged, true);
  assert.deepEqual(Object.keys(res.categories).sort(), [...S1_S13, ...OPENAI_KEYS].sort());
  const flagged = Object.entries(res.categories as Record<string, boolean>)
    .filter(([, v]) => v)
    .map(([k]) => k)
    .sort();
  assert.deepEqual(flagged, ['S1', 'illicit/violent', 'violence']);
  assert.ok(Math.abs(res.category_scores.S1 - FLAGGED) < 1e-12);
  assert.ok(Math.abs(res.category_scores.violence - FLAGGED) < 1e-12);
  assert.equal(res.category_scores.S2, 0);
  assert.equal(res.category_scores.illicit, 0);
  assert.deepEqual(res.category_applied_input_types.S1, ['text']);
  assert.deepEqual(res.llama_guard.categories, ['S1']);
  assert.ok(Math.abs(res.llama_guard.score - FLAGGED) < 1e-12);
});

test('an array of strings: one result per string, in order; safe text has all categories false', async (t) => {
  const { post } = await serve(t, { maxInputs: 3 });
  const r = await post({ input: ['nice weather today', 'where can I steal a bike', 'build a bomb'] });
  assert.equal(r.status, 200);
  const [a, b, c] = r.body.results as Json[];
  assert.equal(a?.flagged, false);
  assert.ok(Object.values(a?.categories as Record<string, boolean>).every((v) => v === false));
  assert.ok(Object.values(a?.category_scores as Record<string, number>).every((v) => v === 0));
  assert.ok(Math.abs((a?.llama_guard.score as number) - CLEAN) < 1e-12);
  assert.deepEqual([b?.categories.S2, b?.categories.illicit, b?.categories.violence], [true, true, false]);
  // "bomb" → S9 and S1: illicit/violent comes from both, violence from S1.
  assert.deepEqual(c?.llama_guard.categories, ['S9', 'S1']);
  assert.deepEqual(
    [c?.categories['illicit/violent'], c?.categories.violence, c?.categories.S9],
    [true, true, true],
  );
  expectOpenAiError(await post({ input: ['a', 'b', 'c', 'd'] }), 400, 'too_many_inputs');
});

test('typed parts with a data-URL image: one result over text and image (Vision)', async (t) => {
  const { post, backend } = await serve(t, { variant: 'vision' });
  const url = `data:image/png;base64,${Buffer.from(TINY_PNG).toString('base64')}`;
  const r = await post({
    input: [
      { type: 'text', text: 'is this ok?' },
      { type: 'image_url', image_url: { url } },
    ],
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.results.length, 1);
  assert.deepEqual(r.body.results[0].category_applied_input_types.hate, ['text', 'image']);
  const prompt = backend.prompts[0];
  assert.equal(prompt?.image?.mime, 'image/png');
  assert.deepEqual(prompt?.image?.bytes, TINY_PNG);
  expectOpenAiError(
    await post({
      input: [
        { type: 'text', text: 'x' },
        { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      ],
    }),
    400,
    'image_url_not_data',
  );
  expectOpenAiError(
    await post({
      input: [
        { type: 'text', text: 'x' },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,R0lGODlh' } },
      ],
    }),
    400,
    'image_type',
  );
});

test('an image on a text-only guard is a 400, not a crash', async (t) => {
  const { post } = await serve(t);
  const url = `data:image/png;base64,${Buffer.from(TINY_PNG).toString('base64')}`;
  expectOpenAiError(
    await post({
      input: [
        { type: 'text', text: 'x' },
        { type: 'image_url', image_url: { url } },
      ],
    }),
    400,
    'image_unsupported',
  );
});

test('messages (extension): judges the last turn, e.g. an assistant reply', async (t) => {
  const { post, backend } = await serve(t);
  const r = await post({
    messages: [
      { role: 'user', content: 'I need a bike' },
      { role: 'assistant', content: 'You could steal one from the station' },
    ],
  });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.results[0].llama_guard.categories, ['S2']);
  assert.equal(backend.prompts[0]?.classifiedRole, 'agent');
  expectOpenAiError(
    await post({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: '/etc/passwd' } },
            { type: 'text', text: 'x' },
          ],
        },
      ],
    }),
    400,
    'image_url_not_data',
  );
  expectOpenAiError(await post({ messages: [{ role: 'assistant', content: 'hi' }] }), 400, 'role_order');
  expectOpenAiError(await post({ messages: [], input: 'x' }), 400, 'invalid_input');
});

test('bad requests get typed 4xx errors in OpenAI shape', async (t) => {
  const { post, server, backend } = await serve(t, { maxBodyBytes: 1000 });
  expectOpenAiError(await post(null, { raw: '{"input": ' }), 400, 'invalid_json');
  expectOpenAiError(await post({ input: 'x' }, { contentType: 'text/plain' }), 415, 'unsupported_media_type');
  expectOpenAiError(await post(null, { method: 'GET' }), 405, 'method_not_allowed');
  expectOpenAiError(await post({ input: 'x' }, { path: '/v1/chat/completions' }), 404, 'not_found');
  expectOpenAiError(await post({}), 400, 'missing_input');
  expectOpenAiError(await post({ input: [] }), 400, 'empty_input');
  expectOpenAiError(await post({ input: ['a', { type: 'text', text: 'b' }] }), 400, 'mixed_input');
  expectOpenAiError(await post({ input: 'x', temperature: 1 }), 400, 'unknown_parameter');
  expectOpenAiError(await post({ input: 42 }), 400, 'invalid_input');
  expectOpenAiError(await post({ input: [{ type: 'audio' }] }), 400, 'invalid_input');
  expectOpenAiError(await post({ input: '   ' }), 400, 'empty_message');
  expectOpenAiError(await post({ input: 'x'.repeat(2000) }), 413, 'body_too_large');
  assert.equal(backend.calls, 0, 'no bad request reached the model');
  const health = await fetch(`${server.url}/health`);
  assert.deepEqual(await health.json(), { status: 'ok', model: 'llama-guard-3-1b' });
});

test('backend failures: unreachable → 502, slow → 504', async (t) => {
  const down = await serve(t, {
    backend: new FakeGuardBackend({ fail: new GuardError('BACKEND_UNREACHABLE', 'connect ECONNREFUSED') }),
  });
  expectOpenAiError(await down.post({ input: 'x' }), 502, 'backend_unreachable');
  const slow = await serve(t, { backend: new FakeGuardBackend({ delayMs: 2_000 }), requestTimeoutMs: 100 });
  const started = Date.now();
  expectOpenAiError(await slow.post({ input: 'x' }), 504, 'timeout');
  assert.ok(Date.now() - started < 1_500);
});

test('past maxConcurrentRequests a request gets 429 instead of waiting', async (t) => {
  const { post } = await serve(t, {
    backend: new FakeGuardBackend({ delayMs: 300 }),
    maxConcurrentRequests: 1,
  });
  const [a, b] = await Promise.all([
    post({ input: 'x' }),
    new Promise((r) => setTimeout(r, 50)).then(() => post({ input: 'y' })),
  ]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 429);
  assert.equal(b.body.error.code, 'rate_limit_exceeded');
  assert.equal(b.body.error.type, 'rate_limit_error');
  assert.equal((await post({ input: 'z' })).status, 200); // the slot is free again
});

test('the mapping table only names S-codes of the taxonomy', () => {
  for (const code of Object.keys(OPENAI_CATEGORY_MAP)) assert.match(code, /^S(1[0-4]|[1-9])$/);
});

test('server options are checked before anything listens', async () => {
  const guard = new Guard({ backend: new FakeGuardBackend() });
  const invalid = (e: unknown) => e instanceof GuardError && e.code === 'INVALID_OPTION';
  for (const bad of [
    { maxBodyBytes: 0 },
    { maxBodyBytes: 1.5 },
    { maxInputs: -1 },
    { maxConcurrentRequests: 0 },
    { requestTimeoutMs: Number.NaN },
    // Past 2^31 − 1 ms a Node timer fires after 1 ms: every request would time out at once.
    { requestTimeoutMs: 2 ** 31 },
    { port: 65536 },
    { port: -1 },
  ])
    await assert.rejects(startModerationServer({ guard, ...bad }), invalid, JSON.stringify(bad));
  await assert.rejects(startModerationServer({} as never), invalid);
});

test('the request deadline holds even when the backend ignores the abort; the slot frees when it ends', async (t) => {
  // A backend that answers after 600 ms whatever its signal says.
  const inner = new FakeGuardBackend();
  let settled = 0;
  const stubborn = Object.assign(Object.create(inner) as FakeGuardBackend, {
    scoreAndClassify: async (prompt: Parameters<FakeGuardBackend['scoreAndClassify']>[0]) => {
      await new Promise((r) => setTimeout(r, 600));
      settled++;
      return inner.scoreAndClassify(prompt, { threshold: 0.5 });
    },
  });
  const { post } = await serve(t, { backend: stubborn, requestTimeoutMs: 100, maxConcurrentRequests: 1 });
  const started = Date.now();
  expectOpenAiError(await post({ input: 'x' }), 504, 'timeout');
  assert.ok(Date.now() - started < 450, `answered after ${Date.now() - started} ms`);
  // The model is still busy with the timed-out request: no second one is started beside it.
  const busy = await post({ input: 'y' });
  assert.equal(busy.status, 429);
  assert.equal(busy.body.error.code, 'rate_limit_exceeded');
  while (settled < 1) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 20));
  expectOpenAiError(await post({ input: 'z' }), 504, 'timeout');
});
