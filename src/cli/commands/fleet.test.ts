import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FleetSummary } from '../../client/fleet.ts';
import { ConfigError } from '../../core/errors.ts';
import { startServer } from '../../server/index.ts';
import { EXIT_OK, EXIT_USAGE, main } from '../main.ts';
import { type FleetFlags, fleetOptionsFrom } from './fleet.ts';

const DEFAULTS: FleetFlags = {
  server: 'http://127.0.0.1:1',
  clients: '10',
  enrollmentKey: 'k',
  dataDir: '/nonexistent',
  msPerSecond: '100',
  trainSigma: '1',
  speedSigma: '0',
  dropout: '0',
  seed: '1',
};

async function capture(run: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const write = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => {
    err += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await run(), out, err };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

test('every bad flag is reported at once as a ConfigError', () => {
  assert.throws(
    () =>
      fleetOptionsFrom({
        ...DEFAULTS,
        server: 'ftp://x',
        clients: '0',
        concurrency: 'many',
        dropout: '1.5',
        msPerSecond: '-1',
        enrollmentKey: undefined as unknown as string,
      }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.issues.map((i) => i.path).sort(), [
        '--clients',
        '--concurrency',
        '--dropout',
        '--enrollment-key',
        '--ms-per-second',
        '--server',
      ]);
      return true;
    },
  );
});

test('the enrollment key is read from a local data folder when not given', () => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-fleet-cli-'));
  try {
    writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ enrollmentKey: 'from-file' }));
    const { enrollmentKey: _, ...rest } = DEFAULTS;
    const saved = process.env.ORCHARD_ENROLLMENT_KEY;
    delete process.env.ORCHARD_ENROLLMENT_KEY;
    try {
      assert.equal(fleetOptionsFrom({ ...rest, dataDir: dir }).enrollmentKey, 'from-file');
    } finally {
      if (saved !== undefined) process.env.ORCHARD_ENROLLMENT_KEY = saved;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('orchard fleet with a bad flag exits 2 and contacts nothing', async () => {
  const r = await capture(() =>
    main(['fleet', '--server', 'http://127.0.0.1:1', '--clients', 'x', '--enrollment-key', 'k']),
  );
  assert.equal(r.code, EXIT_USAGE);
  assert.match(r.err, /--clients/);
});

test('orchard fleet trains against a running server and prints a JSON summary', {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-fleet-cli-'));
  // Hooks run in registration order, so the server may still be writing here: retry ENOTEMPTY.
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));
  const server = await startServer({
    dataDir: dir,
    task: {
      taskId: 'cli-fleet',
      dataset: {
        kind: 'synthetic',
        numClients: 20,
        dim: 10,
        numClasses: 3,
        examplesPerClient: 8,
        testSize: 100,
      },
      model: { kind: 'softmax' },
      strategy: { kind: 'fedbuff', bufferSize: 4 },
      concurrency: 5,
      evalEvery: 0,
    },
  });
  t.after(() => server.close());
  const r = await capture(() =>
    main([
      'fleet',
      '--server',
      server.url,
      '--clients',
      '20',
      '--concurrency',
      '5',
      '--updates',
      '24',
      '--ms-per-second',
      '5',
      '--enrollment-key',
      server.enrollmentKey,
      '--json',
      '--quiet',
    ]),
  );
  assert.equal(r.code, EXIT_OK, r.err);
  const summary = JSON.parse(r.out) as FleetSummary;
  // Uploads in flight when the 24th was accepted may still land, so "at least".
  assert.ok(summary.accepted >= 24);
  assert.equal(summary.stopReason, 'updates');
  assert.ok(summary.latency.update.count >= 24 && summary.latency.update.p50 > 0);
  assert.ok(summary.latency.update.p99 >= summary.latency.update.p50);
  const status = (await (await fetch(`${server.url}/v1/status`)).json()) as { tasks: { accepted: number }[] };
  const served = status.tasks[0]?.accepted ?? 0;
  assert.ok(served >= summary.accepted);
  assert.ok(summary.lastVersion >= 6 && summary.lastVersion <= Math.floor(served / 4), 'buffers of 4');
});
