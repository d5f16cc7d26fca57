/**
 * The SDK in headless Chromium: the page imports src/client straight from the sources (each file
 * transpiled alone by esbuild, no bundle), stores its device token in IndexedDB, and does full
 * check-in → download → train (src/nn, trainLocal) → upload trips against a v1 server. The first
 * upload's answer is lost after the server applied it, so the browser's retry with the same
 * idempotency key is exercised too. Skipped locally without Chromium; fails in CI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '../core/rng.ts';
import { createDataset } from '../data/index.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import type { DenseExamples } from '../data/types.ts';
import { trainLocal } from '../fl/client.ts';
import { createModel } from '../nn/index.ts';
import { startServer } from '../server/index.ts';
import { chromiumSkip, launchChromium, serveSdkPage } from './testing/browser.ts';
import { FakeServer } from './testing/fake-server.ts';

const PAGE = `
import { OrchardClient } from '/src/client/client.ts';
import { localTrainer } from '/src/client/trainer.ts';
import { browserPlatform, IndexedDbStore, LocalStorageStore } from '/src/client/platform/browser.ts';
const out = {};
try {
  const cfg = await (await fetch('/config.json')).json();
  const data = { kind: 'dense', n: cfg.n, dim: cfg.dim, x: Float32Array.from(cfg.x), y: Int32Array.from(cfg.y) };
  const make = (enrollmentKey) => new OrchardClient({
    server: location.origin,
    platform: browserPlatform({ storage: new IndexedDbStore('orchard-test') }),
    ...(enrollmentKey ? { enrollmentKey } : {}),
    trainer: localTrainer(data, { numClasses: cfg.numClasses, seed: cfg.seed }),
    retry: { baseDelayMs: 10, maxDelayMs: 50, requestTimeoutMs: 5000 },
  });
  const first = make(cfg.enrollmentKey);
  out.first = await first.runOnce();
  // A second client object over the same IndexedDB database: the stored token is reused.
  const second = make(undefined);
  out.second = await second.runOnce();
  out.pending = await second.pendingUpload();
  out.userAgent = navigator.userAgent;
  const ls = new LocalStorageStore('orchard-test:');
  await ls.set('k', new Uint8Array([0, 1, 254, 255, 7]));
  out.localStorage = { value: Array.from(await ls.get('k')), raw: localStorage.getItem('orchard-test:k') };
  await ls.delete('k');
  out.localStorage.afterDelete = await ls.get('k');
} catch (e) {
  out.error = String((e && e.stack) || e);
}
window.__result = out;
`;

interface PageResult {
  error?: string;
  first: { kind: string; response: { duplicate: boolean; version: number } };
  second: { kind: string; response: { version: number } };
  pending: unknown;
  userAgent: string;
  localStorage: { value: number[]; raw: string; afterDelete: unknown };
}

/** Serves the page in front of `apiUrl`, runs it in a fresh headless Chromium, returns its result. */
async function runPage(
  t: { after(fn: () => Promise<void>): void },
  apiUrl: string,
  config: Record<string, unknown>,
): Promise<PageResult> {
  const page = await serveSdkPage({ apiUrl, pageScript: PAGE, config });
  t.after(() => page.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const tab = await browser.newPage();
  const pageErrors: string[] = [];
  tab.on('pageerror', (e) => pageErrors.push(String(e)));
  await tab.goto(`${page.url}/`);
  await tab.waitForFunction(
    () => (window as unknown as { __result?: unknown }).__result !== undefined,
    null,
    {
      timeout: 60_000,
    },
  );
  const out = (await tab.evaluate(() => (window as unknown as { __result: unknown }).__result)) as PageResult;
  assert.equal(out.error, undefined, out.error);
  assert.deepEqual(pageErrors, []);
  return out;
}

function deviceConfig(device: DenseExamples, numClasses: number, enrollmentKey: string) {
  return {
    enrollmentKey,
    n: device.n,
    dim: device.dim,
    x: Array.from(device.x.subarray(0, device.n * device.dim)),
    y: Array.from(device.y.subarray(0, device.n)),
    numClasses,
    seed: 77,
  };
}

test('CI has Chromium for the browser tests', { skip: process.env.CI === undefined }, () => {
  assert.equal(chromiumSkip(), false);
});

test('the SDK runs check-in/train/upload trips in headless Chromium', {
  skip: chromiumSkip(),
  timeout: 90_000,
}, async (t) => {
  const data = syntheticDataset({
    alpha: 1,
    beta: 1,
    numClients: 2,
    dim: 16,
    numClasses: 4,
    examplesPerClient: 40,
    examplesSigma: 0,
    testSize: 10,
    seed: 8,
  });
  const device = data.client(1) as DenseExamples;
  const local = { epochs: 2, batchSize: 8, lr: 0.2 };
  const model = createModel({ kind: 'softmax' }, data);
  const initial = model.init(new Rng(4));
  const api = await new FakeServer({
    initialParams: initial,
    plan: { model: { kind: 'softmax' }, localTrain: local },
    bufferSize: 1,
  }).start();
  t.after(() => api.close());
  api.inject('update', { kind: 'reset-after-apply' });
  const out = await runPage(t, api.url, deviceConfig(device, 4, api.enrollmentKey));
  assert.match(out.userAgent, /Chrome/);
  assert.deepEqual(out.localStorage, {
    value: [0, 1, 254, 255, 7],
    raw: Buffer.from([0, 1, 254, 255, 7]).toString('base64'),
    afterDelete: null,
  });
  assert.equal(out.first.kind, 'accepted');
  assert.equal(out.first.response.duplicate, true, 'the lost answer was recovered by a same-key retry');
  assert.equal(out.second.kind, 'accepted');
  assert.equal(out.second.response.version, 2);
  assert.equal(out.pending, null);
  assert.equal(api.applied.length, 2, 'each trip applied exactly once');
  assert.equal(api.requests.filter((r) => r.route === 'register').length, 1, 'token persisted in IndexedDB');
  // Node computes the browser's first update independently: same data, start and seeded stream.
  const expected = trainLocal(model, initial, device, local, new Rng(77));
  const got = api.applied[0]?.delta;
  assert.ok(got);
  for (let i = 0; i < got.length; i++)
    assert.ok(Math.abs((got[i] as number) - (expected.delta[i] as number)) <= 1e-6, `coordinate ${i}`);
});

test('the SDK in Chromium trains against the real server', {
  skip: chromiumSkip(),
  timeout: 90_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-browser-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const dataset = {
    kind: 'synthetic',
    alpha: 1,
    beta: 1,
    numClients: 4,
    dim: 16,
    numClasses: 4,
    examplesPerClient: 20,
    examplesSigma: 0,
    testSize: 50,
  } as const;
  const server = await startServer({
    dataDir: dir,
    task: {
      taskId: 'browser',
      dataset,
      model: { kind: 'softmax' },
      strategy: { kind: 'fedbuff', bufferSize: 1 },
      evalEvery: 0,
    },
  });
  t.after(() => server.close());
  // The task's seed (default 1) also seeds its dataset: this is client 2's share.
  const device = createDataset(dataset, 1).client(2) as DenseExamples;
  const out = await runPage(t, server.url, deviceConfig(device, 4, server.enrollmentKey));
  assert.equal(out.first.kind, 'accepted');
  assert.equal(out.first.response.version, 1);
  assert.equal(out.second.kind, 'accepted');
  assert.equal(out.second.response.version, 2);
  const status = (await (await fetch(`${server.url}/v1/status`)).json()) as { tasks: { accepted: number }[] };
  assert.equal(status.tasks[0]?.accepted, 2);
});
