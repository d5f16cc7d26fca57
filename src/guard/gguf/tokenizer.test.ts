import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildVocab, byteToUnicode, pretokenize, TokenType } from './tokenizer.ts';

test('GPT-2 byte table: 256 distinct printable symbols, known fixed points', () => {
  const map = byteToUnicode();
  assert.equal(new Set(map).size, 256);
  assert.equal(map[0x20], 'Ġ'); // U+0120
  assert.equal(map[0x0a], 'Ċ'); // U+010A
  assert.equal(map[0x41], 'A');
  assert.equal(map[0xad], 'Ń'); // soft hyphen is remapped too (U+0143)
});

test('Llama 3 pre-tokenizer splits as its regex does (digits in threes, contractions, newline runs)', () => {
  assert.deepEqual(pretokenize("Hello world's 12345!!\n\nOK"), [
    'Hello',
    ' world',
    "'s",
    ' ',
    '123',
    '45',
    '!!\n\n',
    'OK',
  ]);
  assert.deepEqual(pretokenize('a  b'), ['a', ' ', ' b']);
});

test('BPE training on a small corpus gives the hand-derived merges', () => {
  // Pre-tokens: "ab" ×1, " ab" ×2, " abc" ×1. Pair counts: (a,b) 4, (Ġ,a) 3, (b,c) 1 → merge "a b";
  // then (Ġ,ab) 3, (ab,c) 1 → "Ġ ab"; then "Ġab c".
  const v = buildVocab({ corpus: ['ab ab ab abc'], specialTokens: ['<|x|>'], targetSize: 300 });
  assert.deepEqual(v.merges, ['a b', 'Ġ ab', 'Ġab c']);
  assert.deepEqual(v.tokens.slice(256, 259), ['ab', 'Ġab', 'Ġabc']);
  assert.equal(v.tokens.length, 300);
  assert.equal(v.special.get('<|x|>'), 299);
  assert.equal(v.types[299], TokenType.control);
  assert.equal(v.types[298], TokenType.unused);
  assert.equal(v.types[0], TokenType.normal);
  assert.equal(new Set(v.tokens).size, v.tokens.length, 'token texts are unique');
  assert.throws(() => buildVocab({ corpus: ['ab ab ab abc'], targetSize: 100 }), /target is 100/);
});

test('required words become single tokens; special tokens never enter the merges', () => {
  const v = buildVocab({ corpus: ['<|a|>hello<|a|> there'], words: ['unsafe'], specialTokens: ['<|a|>'] });
  for (const w of ['hello', 'Ġthere', 'unsafe']) assert.ok(v.tokens.includes(w), w);
  assert.ok(!v.tokens.some((t) => t.includes('<|a') && t !== '<|a|>'));
});
