/**
 * The conformance suite must fail broken backends, or passing it means nothing. Each broken double
 * below violates one rule; the suite runs them in a child test process and must report exactly the
 * expected failures.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { pathToFileURL } from 'node:url';

const here = (f: string) => pathToFileURL(join(import.meta.dirname, f)).href;

const SCRIPT = `
import { runBackendConformance } from '${here('conformance.ts')}';
import { FakeGuardBackend } from '${here('../testing/fake-backend.ts')}';

class OutOfRange extends FakeGuardBackend {
  async scoreAndClassify(p, o) { const s = await super.scoreAndClassify(p, o); return { ...s, pUnsafe: s.pUnsafe * 3 }; }
}
class NeverGenerates extends FakeGuardBackend {
  async scoreAndClassify(p, o) { const { generated, ...s } = await super.scoreAndClassify(p, o); return s; }
}
class Garbled extends FakeGuardBackend {
  constructor() { super({ output: () => 'I think this is fine' }); }
}
class Jittery extends FakeGuardBackend {
  n = 0;
  async scoreAndClassify(p, o) { const s = await super.scoreAndClassify(p, o); return { ...s, pUnsafe: Math.min(1, s.pUnsafe + 0.01 * (this.n++ % 2)) }; }
}
class UntypedErrors extends FakeGuardBackend {
  closed2 = false;
  async scoreAndClassify(p, o) { if (o.signal?.aborted || this.closed2) throw new Error('plain'); return super.scoreAndClassify(p, o); }
  async close() { if (this.closed2) throw new Error('closed twice'); this.closed2 = true; }
}
class FakeVision extends FakeGuardBackend {
  async scoreAndClassify(p, o) { const { image, ...rest } = p; return super.scoreAndClassify(rest, o); }
}

runBackendConformance('out-of-range', async () => new OutOfRange());
runBackendConformance('never-generates', async () => new NeverGenerates());
runBackendConformance('garbled', async () => new Garbled());
runBackendConformance('jittery', async () => new Jittery());
runBackendConformance('untyped-errors', async () => new UntypedErrors());
runBackendConformance('ignores-images', async () => new FakeVision());
`;

function failures(tap: string): Map<string, string[]> {
  // TAP from node:test: suites and their subtests, indented; "not ok N - name" marks a failure.
  const bySuite = new Map<string, string[]>();
  let suite = '';
  for (const line of tap.split('\n')) {
    const s = /^# Subtest: GuardBackend conformance: (.+)$/.exec(line);
    if (s) suite = s[1] as string;
    const f = /^ {4}not ok \d+ - (.+?)(?: #.*)?$/.exec(line);
    if (f && suite) bySuite.set(suite, [...(bySuite.get(suite) ?? []), f[1] as string]);
  }
  return bySuite;
}

it('fails each broken backend on the rule it breaks', { timeout: 120_000 }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'guard-conformance-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'broken.test.ts');
  writeFileSync(file, SCRIPT);
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', file], {
    encoding: 'utf8',
    timeout: 110_000,
    // A nested test run must not think it is a child of ours (it would report in the internal format).
    env: { ...process.env, NODE_TEST_CONTEXT: undefined },
  });
  assert.notEqual(r.status, 0, 'the broken backends must fail the suite');
  const f = failures(r.stdout);
  const has = (suite: string, test: RegExp) =>
    assert.ok(
      (f.get(suite) ?? []).some((n) => test.test(n)),
      `${suite} should fail /${test.source}/; failures: ${JSON.stringify(f.get(suite))}`,
    );
  has('out-of-range', /P\(unsafe\) in \[0, 1\]/);
  has('never-generates', /parseable verdict/);
  has('garbled', /parseable verdict/);
  has('jittery', /same score/);
  has('untyped-errors', /ABORTED/);
  has('untyped-errors', /closes idempotently/);
  has('ignores-images', /refuses an image/);
});
