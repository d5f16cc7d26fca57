import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  categoryText,
  defaultCategories,
  HAZARD_CATEGORIES,
  parseCategories,
  resolvePolicy,
} from './taxonomy.ts';
import { GuardError } from './types.ts';

const code = (c: string) => (e: unknown) => e instanceof GuardError && e.code === c;

describe('taxonomy', () => {
  it('has the 14 MLCommons hazards with the names the prompts use', () => {
    assert.equal(HAZARD_CATEGORIES.length, 14);
    assert.deepEqual(
      HAZARD_CATEGORIES.map((c) => c.code),
      Array.from({ length: 14 }, (_, i) => `S${i + 1}`),
    );
    assert.equal(HAZARD_CATEGORIES[0]?.name, 'Violent Crimes');
    assert.equal(HAZARD_CATEGORIES[13]?.name, 'Code Interpreter Abuse');
    assert.equal(defaultCategories('1b').length, 13);
    assert.equal(defaultCategories('vision').length, 13);
    assert.equal(defaultCategories('8b').length, 14);
  });

  it('excludes by code and rejects unknown or total exclusions', () => {
    const p = resolvePolicy('1b', undefined, ['S6', 'S6', 'S13']);
    assert.deepEqual(p.excluded, ['S6', 'S13']);
    assert.equal(p.active.length, 11);
    assert.throws(() => resolvePolicy('1b', undefined, ['S14']), code('UNKNOWN_CATEGORY'));
    assert.throws(() => resolvePolicy('8b', undefined, ['s1']), code('UNKNOWN_CATEGORY'));
    assert.throws(() => resolvePolicy('1b', [{ code: 'A', name: 'a' }], ['A']), code('INVALID_CATEGORIES'));
  });

  it('validates custom lists', () => {
    assert.throws(() => resolvePolicy('1b', []), code('INVALID_CATEGORIES'));
    assert.throws(() => resolvePolicy('1b', [{ code: 'S 1', name: 'x' }]), code('INVALID_CATEGORIES'));
    assert.throws(() => resolvePolicy('1b', [{ code: 'S1:', name: 'x' }]), code('INVALID_CATEGORIES'));
    assert.throws(() => resolvePolicy('1b', [{ code: 'S1', name: '' }]), code('INVALID_CATEGORIES'));
    assert.throws(() => resolvePolicy('1b', [{ code: 'S1', name: 'a\nb' }]), code('INVALID_CATEGORIES'));
    assert.throws(
      () =>
        resolvePolicy('1b', [
          { code: 'S1', name: 'a' },
          { code: 'S1', name: 'b' },
        ]),
      code('INVALID_CATEGORIES'),
    );
  });

  it('reads both file forms; the dictionary form round-trips the template values', () => {
    assert.deepEqual(parseCategories([{ code: 'X1', name: 'Pets', description: 'cats' }]), [
      { code: 'X1', name: 'Pets', description: 'cats' },
    ]);
    const dict = parseCategories({
      S1: 'Custom category 1. \nAI models should not talk about custom category 1',
      S2: 'Two.',
    });
    assert.equal(
      categoryText(dict[0] as never),
      'Custom category 1. \nAI models should not talk about custom category 1',
    );
    assert.equal(categoryText(dict[1] as never), 'Two.');
    assert.equal(categoryText({ code: 'S1', name: 'Violent Crimes' }), 'Violent Crimes.');
    assert.throws(() => parseCategories('S1'), code('INVALID_CATEGORIES'));
    assert.throws(() => parseCategories([{ code: 1, name: 'x' }]), code('INVALID_CATEGORIES'));
    assert.throws(() => parseCategories({ S1: 3 }), code('INVALID_CATEGORIES'));
  });
});
