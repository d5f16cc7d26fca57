/**
 * `orchard guard serve` end to end in process: moderation server → Guard → OpenAI-compatible
 * backend → the test server playing the model.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { registerBackendFactory, unregisterBackendFactory } from '../../guard/backends/registry.ts';
import {
  expectOpenAiChat,
  fakeOpenAiChatAnswer,
  requestText,
  startTestServer,
} from '../../guard/backends/testing-server.ts';
import { DEFAULT_MAX_IMAGE_BYTES } from '../../guard/image.ts';
import { DEFAULT_MAX_BODY_BYTES } from '../../guard/serve/server.ts';
import { FakeGuardBackend, TINY_PNG } from '../../guard/testing/fake-backend.ts';
import { EXIT_USAGE } from '../main.ts';
import { bodyLimitFor, registerGuardServe, runGuardServe } from './guard-serve.ts';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'orchard.js');

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

/** `orchard guard serve ...args` parsed by commander in process; resolves once the URL is printed. */
async function startServe(args: string[]) {
  let out = '';
  const stop = new AbortController();
  const program = new Command().exitOverride();
  registerGuardServe(program.command('guard'), { out: (s) => (out += s), err: () => {} }, stop.signal);
  const running = program.parseAsync(['guard', 'serve', ...args], { from: 'user' });
  let failed: unknown;
  running.catch((e) => (failed = e));
  const deadline = Date.now() + 10_000;
  while (!out.includes('/v1/moderations') && failed === undefined && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  if (failed !== undefined) throw failed;
  const url = /POST (\S+)/.exec(out)?.[1];
  assert.ok(url, `no URL printed: ${out}`);
  const post = async (body: unknown) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
  };
  return {
    post,
    stop: async () => {
      stop.abort();
      await running;
    },
  };
}

test('--max-image-bytes: a larger image is answered 413 image_too_large; one at the limit passes', async (t) => {
  registerBackendFactory('llama', async () => new FakeGuardBackend({ vision: true }));
  t.after(() => unregisterBackendFactory('llama'));
  const image = `data:image/png;base64,${Buffer.from(TINY_PNG).toString('base64')}`;
  const request = {
    input: [
      { type: 'text', text: 'is this fine?' },
      { type: 'image_url', image_url: { url: image } },
    ],
  };
  const common = ['--model', 'x.gguf', '--variant', 'vision', '--port', '0'];

  const tight = await startServe([...common, '--max-image-bytes', String(TINY_PNG.length - 1)]);
  try {
    const r = await tight.post(request);
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.error?.code, 'image_too_large');
    assert.match(r.body.error?.message ?? '', new RegExp(`limit is ${TINY_PNG.length - 1} bytes`));
    // Text alone is unaffected.
    assert.equal((await tight.post({ input: 'hello' })).status, 200);
  } finally {
    await tight.stop();
  }

  const exact = await startServe([...common, '--max-image-bytes', String(TINY_PNG.length)]);
  try {
    assert.equal((await exact.post(request)).status, 200);
  } finally {
    await exact.stop();
  }
});

test('--max-image-bytes and --port refuse bad values as usage errors', async () => {
  for (const [flag, value] of [
    ['--max-image-bytes', '0'],
    ['--max-image-bytes', '-5'],
    ['--max-image-bytes', '1.5'],
    ['--max-image-bytes', '10MB'],
    ['--port', '70000'],
  ] as const) {
    await assert.rejects(
      startServe(['--model', 'x.gguf', flag, value]),
      (e) => e instanceof ConfigError && e.issues[0]?.path === flag,
      `${flag} ${value}`,
    );
  }
  // The real binary: exit code 2 and the flag named, before any backend or port is touched.
  const r = spawnSync(
    process.execPath,
    [BIN, 'guard', 'serve', '--endpoint', 'http://127.0.0.1:1/v1', '--max-image-bytes', '0'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, EXIT_USAGE, r.stderr);
  assert.match(r.stderr, /--max-image-bytes: expected a positive integer, got '0'/);
});

test('the body limit leaves room for the largest image as a data URL', () => {
  assert.equal(bodyLimitFor(DEFAULT_MAX_IMAGE_BYTES), DEFAULT_MAX_BODY_BYTES);
  const big = 30 * 1024 * 1024;
  // base64: 4 characters per 3 bytes, computed independently from Buffer's encoder.
  const dataUrl = `data:image/png;base64,${Buffer.alloc(big).toString('base64')}`;
  assert.ok(bodyLimitFor(big) > dataUrl.length + 64 * 1024);
  assert.ok(bodyLimitFor(big) < dataUrl.length + 2 * 1024 * 1024);
});
