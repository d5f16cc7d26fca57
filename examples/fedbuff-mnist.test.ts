import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

// The README's library example must keep working as written.
test('examples/fedbuff-mnist.ts runs and learns well above chance', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/fedbuff-mnist.ts', '3000'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { finalAccuracy: number; counts: { completed: number } };
  assert.equal(out.counts.completed, 3000);
  assert.ok(out.finalAccuracy > 0.6, `accuracy ${out.finalAccuracy}`);
});
