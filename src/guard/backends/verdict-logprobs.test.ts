import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isGuardError } from '../types.ts';
import { verdictFromLogprobs } from './verdict-logprobs.ts';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const at = (token: string, logprob: number, top: Array<[string, number]>) => ({
  token,
  logprob,
  top: top.map(([t, l]) => ({ token: t, logprob: l })),
});

test('two-way softmax over the verdict logprobs at the first non-blank token', () => {
  const v = verdictFromLogprobs([
    at('\n\n', -0.01, [['\n\n', -0.01]]),
    at('unsafe', -0.2, [
      ['unsafe', -0.2],
      ['safe', -1.8],
      ['Un', -6],
    ]),
  ]);
  assert.equal(v.position, 1);
  assert.equal(v.bounded, false);
  assert.ok(Math.abs(v.pUnsafe - sigmoid(1.6)) < 1e-12); // σ(u − s) = σ(−0.2 + 1.8)
});

test('spellings of one verdict are pooled: p(safe) = p("safe") + p(" safe")', () => {
  const v = verdictFromLogprobs([
    at('safe', Math.log(0.5), [
      ['safe', Math.log(0.5)],
      [' safe', Math.log(0.2)],
      ['unsafe', Math.log(0.1)],
    ]),
  ]);
  assert.ok(Math.abs(v.safe - Math.log(0.7)) < 1e-12);
  assert.ok(Math.abs(v.pUnsafe - 0.1 / 0.8) < 1e-12); // 0.1 / (0.1 + 0.7)
});

test('byte-level BPE spellings (ĊĊ, Ġunsafe) read as their text', () => {
  const v = verdictFromLogprobs([
    at('\u010a\u010a', -0.01, []),
    at('\u0120unsafe', -0.1, [
      ['\u0120unsafe', -0.1],
      ['\u0120safe', -2.5],
    ]),
  ]);
  assert.equal(v.position, 1);
  assert.ok(Math.abs(v.pUnsafe - sigmoid(2.4)) < 1e-12);
});

test('a missing verdict is bounded by the least likely listed token; none at all is BAD_RESPONSE', () => {
  const v = verdictFromLogprobs([
    at('unsafe', -0.05, [
      ['unsafe', -0.05],
      ['Unsafe', -4],
      ['\n', -9],
    ]),
  ]);
  assert.equal(v.bounded, true);
  assert.equal(v.safe, -9);
  assert.ok(Math.abs(v.pUnsafe - sigmoid(8.95)) < 1e-12);
  assert.throws(
    () =>
      verdictFromLogprobs([
        at('Sure', -0.1, [
          ['Sure', -0.1],
          ['I', -3],
        ]),
      ]),
    (e) => isGuardError(e, 'BAD_RESPONSE') && /neither 'safe' nor 'unsafe'/.test(e.message),
  );
  assert.throws(
    () => verdictFromLogprobs([at('\n', -0.1, [])]),
    (e) => isGuardError(e, 'BAD_RESPONSE'),
  );
  assert.throws(
    () => verdictFromLogprobs([]),
    (e) => isGuardError(e, 'BAD_RESPONSE'),
  );
});
