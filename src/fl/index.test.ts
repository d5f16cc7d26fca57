import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrchardError } from '../core/errors.ts';
import { createStrategy } from './index.ts';
import { StrategySpecSchema } from './spec.ts';

test('createStrategy builds each kind with its report name from parsed specs', () => {
  const init = Float32Array.from([1, 2, 3]);
  const cases: [unknown, string][] = [
    [{ kind: 'sync' }, 'fedavg'],
    [{ kind: 'sync', serverOptimizer: { kind: 'momentum', lr: 1 } }, 'fedavgm'],
    [{ kind: 'sync', serverOptimizer: { kind: 'adam', lr: 0.01 } }, 'fedadam'],
    [{ kind: 'fedbuff' }, 'fedbuff'],
    [{ kind: 'fedasync' }, 'fedasync'],
  ];
  for (const [raw, name] of cases) {
    const s = createStrategy(StrategySpecSchema.parse(raw), init);
    assert.equal(s.name, name);
    assert.equal(s.version, 0);
    assert.deepEqual(s.params, init);
    assert.notEqual(s.params, init, 'initial params are copied');
  }
});

test('createStrategy refuses non-finite initial parameters', () => {
  assert.throws(
    () => createStrategy(StrategySpecSchema.parse({ kind: 'fedbuff' }), Float32Array.from([0, Number.NaN])),
    (e: unknown) => e instanceof OrchardError && e.code === 'INVALID_ARGUMENT',
  );
});
