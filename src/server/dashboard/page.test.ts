/**
 * The dashboard in headless Chromium against a real server: the page loads without any external
 * request, draws its charts, and the charts update live (server-sent events) while a fleet trains;
 * a refused update shows up in the rejected-by-reason chart. Skipped locally without Chromium,
 * fails in CI.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OrchardClient } from '../../client/client.ts';
import { runFleet } from '../../client/fleet.ts';
import { nodePlatform } from '../../client/platform/node.ts';
import { chromiumSkip, launchChromium } from '../../client/testing/browser.ts';
import { startServer } from '../index.ts';
import { dashboardHtml } from './page.ts';

test('the page is self-contained: no external scripts, styles, fonts or images', () => {
  const html = dashboardHtml();
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script[^>]*\bsrc=/i);
  assert.doesNotMatch(html, /<link\b/i);
  assert.doesNotMatch(html, /@import|url\(/i);
  // The only absolute URL is the SVG namespace name, which is never fetched.
  const urls = html.match(/https?:\/\/[^\s'"<>)]+/g) ?? [];
  assert.deepEqual([...new Set(urls)], ['http://www.w3.org/2000/svg']);
  for (const id of ['accuracy', 'loss', 'rate', 'staleness', 'inflight', 'rejected'])
    assert.ok(html.includes(`id="chart-${id}"`), id);
});

test('CI has Chromium for the dashboard test', { skip: process.env.CI === undefined }, () => {
  assert.equal(chromiumSkip(), false);
});

test('the dashboard loads, draws charts and updates them while a fleet trains', {
  skip: chromiumSkip(),
  timeout: 90_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-dashboard-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const server = await startServer({
    dataDir: dir,
    task: {
      taskId: 'dash',
      dataset: {
        kind: 'synthetic',
        numClients: 30,
        dim: 12,
        numClasses: 4,
        examplesPerClient: 10,
        testSize: 200,
      },
      model: { kind: 'softmax' },
      localTrain: { epochs: 1, batchSize: 5, lr: 0.1 },
      strategy: { kind: 'fedbuff', bufferSize: 4 },
      concurrency: 6,
      evalEvery: 1,
    },
  });
  t.after(() => server.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  const foreign: string[] = [];
  const pageErrors: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(server.url)) foreign.push(r.url());
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${server.url}/`);
  const points = (id: string) =>
    page.$eval(`#chart-${id}`, (svg) => Number(svg.getAttribute('data-points') ?? '0'));
  // Version 0 is evaluated at start: the accuracy chart has a point before any training.
  await page.waitForFunction(
    () => Number(document.querySelector('#chart-accuracy')?.getAttribute('data-points')) >= 1,
    null,
    { timeout: 30_000 },
  );
  await page.waitForFunction(() => document.querySelector('#conn')?.className === 'live', null, {
    timeout: 30_000,
  });
  const before = await points('accuracy');
  assert.equal(await page.textContent('#tile-version'), '0');

  // One device uploads NaNs (refused as non_finite) while the fleet trains.
  const broken = new OrchardClient({
    server: server.url,
    platform: nodePlatform(),
    enrollmentKey: server.enrollmentKey,
    trainer: (job) => ({ delta: new Float32Array(job.params.length).fill(Number.NaN), numExamples: 1 }),
  });
  const refused = await broken.runOnce();
  assert.equal(refused.kind, 'rejected');
  await runFleet({
    server: server.url,
    enrollmentKey: server.enrollmentKey,
    clients: 30,
    concurrency: 6,
    updates: 40,
    timing: { msPerSecond: 5 },
  });
  await page.waitForFunction(
    (n) => Number(document.querySelector('#chart-accuracy')?.getAttribute('data-points')) >= n,
    before + 8,
    { timeout: 30_000 },
  );
  await page.waitForSelector('#chart-rejected rect[data-reason="non_finite"]', { timeout: 10_000 });
  await page.waitForFunction(() => Number(document.querySelector('#tile-version')?.textContent) >= 10, null, {
    timeout: 10_000,
  });
  assert.ok((await points('loss')) >= before + 8);
  assert.ok((await points('rate')) >= 1);
  assert.ok((await points('inflight')) >= 1);
  const path = await page.$eval('#chart-accuracy path', (p) => p.getAttribute('d') ?? '');
  assert.ok(path.split('L').length >= before + 8, 'the accuracy line has a vertex per evaluated version');
  assert.deepEqual(foreign, []);
  assert.deepEqual(pageErrors, []);
});
