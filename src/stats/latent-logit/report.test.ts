import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { reproTable, writeLogitReport } from './report.ts';
import { runLogitRepro } from './repro.ts';

test('a tiny reproduction writes a self-contained report and consistent results JSON', async () => {
  const result = runLogitRepro({
    quick: true,
    restarts: 2,
    settings: [{ kind: 'binary', n: 6, T: 12, d: 3, r: 1 }],
  });
  const setting = result.settings[0];
  assert.ok(setting !== undefined);
  assert.deepEqual(
    setting.methods.map((m) => m.method),
    ['convex', 'convex-rank', 'pooled', 'per-individual', 'mixed'],
  );
  for (const m of setting.methods) {
    assert.ok(Number.isFinite(m.recoveryError) && m.recoveryError >= 0);
    assert.ok(m.heldOutLogLik < 0);
    assert.ok(m.instability >= 0);
  }
  // Convex and ridge problems have unique solutions: restarts agree.
  for (const m of setting.methods.slice(0, 4))
    assert.ok(m.instability < 1e-4, `${m.method}: ${m.instability}`);
  const dir = mkdtempSync(join(tmpdir(), 'logit-report-'));
  try {
    const paths = await writeLogitReport(result, dir);
    const html = readFileSync(paths.report, 'utf8');
    assert.ok((html.match(/<svg/g) ?? []).length >= 6);
    assert.ok(!/<script/i.test(html), 'no scripts');
    const json = JSON.parse(readFileSync(paths.results, 'utf8'));
    assert.equal(json.settings[0].methods[0].recoveryError, setting.methods[0]?.recoveryError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(reproTable(result).split('\n').length, 2 + 5);
});
