import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseGuardOutput } from './parse.ts';
import { GuardError } from './types.ts';

const KNOWN = new Set(Array.from({ length: 13 }, (_, i) => `S${i + 1}`));
const bad = (e: unknown) => e instanceof GuardError && e.code === 'BAD_RESPONSE';

describe('parseGuardOutput', () => {
  it('reads the forms the models write', () => {
    // The HF templates end at the assistant header, so real outputs start with blank lines.
    assert.deepEqual(parseGuardOutput('\n\nsafe'), {
      verdict: 'safe',
      categories: [],
      unknownCategories: [],
    });
    assert.deepEqual(parseGuardOutput('safe<|eot_id|>'), {
      verdict: 'safe',
      categories: [],
      unknownCategories: [],
    });
    assert.deepEqual(parseGuardOutput('\n\nunsafe\nS1,S3', KNOWN), {
      verdict: 'unsafe',
      categories: ['S1', 'S3'],
      unknownCategories: [],
    });
    assert.deepEqual(parseGuardOutput('  \n unsafe \n S10, s2 \n<|eot_id|>', KNOWN).categories, [
      'S10',
      'S2',
    ]);
    assert.deepEqual(parseGuardOutput('\r\nunsafe\r\nS2\r\n', KNOWN).categories, ['S2']);
    assert.deepEqual(parseGuardOutput('Unsafe\nS4', KNOWN).categories, ['S4']);
  });

  it('accepts the codes on the verdict line', () => {
    assert.deepEqual(parseGuardOutput('unsafe S1,S2', KNOWN).categories, ['S1', 'S2']);
    assert.deepEqual(parseGuardOutput('unsafe: S9', KNOWN).categories, ['S9']);
  });

  it('reports unknown codes instead of dropping them, and deduplicates', () => {
    const r = parseGuardOutput('unsafe\nS14,S1,S1,S99', KNOWN);
    assert.deepEqual(r.categories, ['S1']);
    assert.deepEqual(r.unknownCategories, ['S14', 'S99']);
  });

  it('knows custom codes it was given', () => {
    const r = parseGuardOutput('unsafe\nPII,S1', new Set(['PII']));
    assert.deepEqual(r.categories, ['PII']);
    assert.deepEqual(r.unknownCategories, ['S1']);
  });

  it('an unsafe verdict with no codes (truncated generation) is unsafe with none', () => {
    assert.deepEqual(parseGuardOutput('unsafe', KNOWN), {
      verdict: 'unsafe',
      categories: [],
      unknownCategories: [],
    });
  });

  it('ignores trailing text after safe and after the code line', () => {
    assert.equal(parseGuardOutput('safe\nS1').verdict, 'safe');
    assert.deepEqual(parseGuardOutput('unsafe\nS1\nsome trailing words', KNOWN).categories, ['S1']);
  });

  it('rejects garbage with BAD_RESPONSE', () => {
    for (const s of ['', '   \n\n', 'I am sorry, I cannot help', 'safety first', 'maybe\nS1', '<|eot_id|>']) {
      assert.throws(() => parseGuardOutput(s, KNOWN), bad, JSON.stringify(s));
    }
    assert.throws(() => parseGuardOutput('unsafe\nThe user asks about weapons', KNOWN), bad);
    assert.throws(() => parseGuardOutput(42 as unknown as string), bad);
  });
});
