import assert from 'node:assert/strict';
import { test } from 'node:test';
import { choiceCsv, parseChoiceCsv } from './csv.ts';
import { type BinaryPanel, type ChoicePanel, compilePanel, splitHoldout } from './data.ts';
import { simulatePanel } from './simulate.ts';

const binary = (y: number[][], d = 2): BinaryPanel => ({
  kind: 'binary',
  d,
  individuals: y.map((ys, i) => ({
    id: `p${i}`,
    x: Float64Array.from({ length: ys.length * d }, (_, k) => (k % 3) - 1),
    y: Uint8Array.from(ys),
  })),
});

test('bad panels are typed errors: wrong shapes, NaN, empty panels, one class', () => {
  assert.throws(() => compilePanel(binary([])), { code: 'DATA_INVALID' });
  assert.throws(() => compilePanel(binary([[1, 0], []])), { code: 'DATA_INVALID' });
  const wrongShape: BinaryPanel = {
    kind: 'binary',
    d: 2,
    individuals: [{ id: 'a', x: new Float64Array(3), y: Uint8Array.of(0, 1) }],
  };
  assert.throws(() => compilePanel(wrongShape), { code: 'SHAPE_MISMATCH' });
  const nan: BinaryPanel = {
    kind: 'binary',
    d: 1,
    individuals: [{ id: 'a', x: Float64Array.of(1, Number.NaN), y: Uint8Array.of(0, 1) }],
  };
  assert.throws(() => compilePanel(nan), { code: 'NON_FINITE' });
  assert.throws(() => compilePanel(binary([[1, 1], [1]])), { code: 'DATA_INVALID', message: /one class/ });
  assert.throws(() => compilePanel(binary([[0, 2]])), { code: 'DATA_INVALID' });
  assert.throws(() => compilePanel({ ...binary([[0, 1]]), d: 0 }), { code: 'SHAPE_MISMATCH' });
  const oneAlt: ChoicePanel = {
    kind: 'choice',
    d: 2,
    individuals: [{ id: 'a', situations: [{ x: Float64Array.of(1, 2), chosen: 0 }] }],
  };
  assert.throws(() => compilePanel(oneAlt), { code: 'DATA_INVALID' });
  const badChosen: ChoicePanel = {
    kind: 'choice',
    d: 1,
    individuals: [{ id: 'a', situations: [{ x: Float64Array.of(1, 2), chosen: 2 }] }],
  };
  assert.throws(() => compilePanel(badChosen), { code: 'DATA_INVALID' });
  const ragged: ChoicePanel = {
    kind: 'choice',
    d: 2,
    individuals: [{ id: 'a', situations: [{ x: Float64Array.of(1, 2, 3), chosen: 0 }] }],
  };
  assert.throws(() => compilePanel(ragged), { code: 'SHAPE_MISMATCH' });
  const noSituations: ChoicePanel = { kind: 'choice', d: 1, individuals: [{ id: 'a', situations: [] }] };
  assert.throws(() => compilePanel(noSituations), { code: 'DATA_INVALID' });
});

test('a binary observation compiles to a two-alternative situation with the zero reference', () => {
  const p = compilePanel(binary([[1, 0]]));
  assert.deepEqual(Array.from(p.altStart[0] as Int32Array), [0, 2, 4]);
  assert.deepEqual(Array.from(p.chosen[0] as Int32Array), [0, 3]);
  assert.deepEqual(Array.from((p.x[0] as Float64Array).subarray(2, 4)), [0, 0]);
});

test('the holdout split keeps every individual in both parts and loses nothing', () => {
  const sim = simulatePanel({ kind: 'choice', n: 5, T: 8, d: 2, r: 1, seed: 1 });
  const p = compilePanel(sim.panel);
  const { train, holdout } = splitHoldout(p, 0.25, 3);
  assert.equal(train.situations + holdout.situations, p.situations);
  for (let i = 0; i < p.n; i++) {
    assert.equal((holdout.chosen[i] as Int32Array).length, 2);
    assert.equal((train.chosen[i] as Int32Array).length, 6);
  }
  assert.throws(() => splitHoldout(p, 1, 0), { code: 'INVALID_ARGUMENT' });
});

test('the choice CSV round-trips a simulated panel', () => {
  const sim = simulatePanel({ kind: 'choice', n: 3, T: 4, d: 2, r: 1, seed: 2, alternatives: 3 });
  const panel = sim.panel as ChoicePanel;
  const parsed = parseChoiceCsv(choiceCsv(panel));
  assert.equal(parsed.d, 2);
  assert.deepEqual(parsed.attributes, ['x1', 'x2']);
  assert.equal(parsed.individuals.length, 3);
  for (const [i, ind] of panel.individuals.entries()) {
    const got = parsed.individuals[i];
    assert.ok(got !== undefined);
    assert.equal(got.id, ind.id);
    for (const [s, sit] of ind.situations.entries()) {
      assert.equal(got.situations[s]?.chosen, sit.chosen);
      assert.deepEqual(Array.from(got.situations[s]?.x ?? []), Array.from(sit.x));
    }
  }
});

test('choice CSV errors name the line and column', () => {
  const head = 'individual,situation,alternative,chosen,price,time';
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['individual,situation,chosen,price\n1,1,1,2', /column 'alternative'.*missing/],
    [`${head}\n`, /no data rows/],
    ['individual,situation,alternative,chosen\n1,1,1,1', /no attribute columns/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,b,0,abc,4`, /line 3, column 'price'.*abc/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,b,0,,4`, /line 3, column 'price'/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,b,2,1,4`, /line 3, column 'chosen'/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,b,1,1,4`, /line 2, column 'chosen'.*2 chosen/],
    [`${head}\n1,1,a,0,2.5,3\n1,1,b,0,1,4`, /0 chosen/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,a,0,1,4`, /line 3, column 'alternative'.*repeats/],
    [`${head}\n1,1,a,1,2.5,3\n1,1,b,0,1`, /line 3: expected 6 fields/],
    [`${head}\n1,1,a,1,2.5,3\n1,2,a,1,1,4\n1,2,b,0,1,4`, /line 2.*only one alternative/],
    [`${head}\n1,1,a,1,NaN,3\n1,1,b,0,1,4`, /line 2, column 'price'/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(
      () => parseChoiceCsv(text),
      (e: unknown) => {
        assert.ok(e instanceof Error && 'code' in e && e.code === 'DATA_INVALID', String(e));
        assert.match(e.message, pattern);
        return true;
      },
    );
  }
  assert.throws(() => parseChoiceCsv(`${head}\n"1,1,a,1,2.5,3`), /unterminated quoted field/);
  const ok = parseChoiceCsv(
    `Individual,Situation,Alternative,Chosen,Price\n"A, Jr.",1,a,1,2.5\n\n"A, Jr.",1,"b\n(""two"" lines)",0,1\n`,
  );
  assert.deepEqual(ok.attributes, ['Price']);
  assert.equal(ok.individuals[0]?.id, 'A, Jr.');
  assert.equal(ok.individuals[0]?.situations[0]?.chosen, 0);
});
