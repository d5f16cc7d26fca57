/**
 * Byte-level BPE vocabulary builder in the GPT-2 / Llama 3 style (`tokenizer.ggml.model = gpt2`,
 * pre-tokenizer `llama-bpe`). Every byte has a token (via the GPT-2 byte→unicode table, so any text
 * can be encoded), merges are learned from a corpus by plain BPE training until every pre-token of
 * the corpus is a single token, the special tokens are control tokens, and the vocabulary is padded
 * with unused tokens to a target size (128,256 for a Llama 3 shaped model).
 *
 * Because training merges every occurrence of the chosen pair and llama.cpp's encoder applies the
 * lowest-ranked pair first, encoding a corpus pre-token with these merges reproduces its training
 * segmentation: one token.
 */

/** llama.cpp token types (llama_token_type). */
export const TokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** The special tokens of the Llama 3 family that Llama Guard 3 prompts use, in id order. */
export const LLAMA3_SPECIAL_TOKENS = [
  '<|begin_of_text|>',
  '<|end_of_text|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eot_id|>',
  '<|image|>',
] as const;

/** GPT-2's reversible map from bytes to printable code points (space → Ġ, newline → Ċ, ...). */
export function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map: string[] = new Array(256);
  for (const b of printable) map[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (map[b] === undefined) map[b] = String.fromCodePoint(256 + n++);
  }
  return map;
}

/** The order GPT-2 lists the byte tokens in: printable bytes first, then the remapped ones. */
function byteTokenOrder(): number[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const set = new Set(printable);
  for (let b = 0; b < 256; b++) if (!set.has(b)) printable.push(b);
  return printable;
}

/** Llama 3's pre-tokenizer split (the `(?i:...)` contraction group spelled out for JS). */
const LLAMA3_SPLIT =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

export function pretokenize(text: string): string[] {
  return text.match(LLAMA3_SPLIT) ?? [];
}

export interface VocabOptions {
  /** Texts to learn merges from. Special-token strings inside them are cut out first. */
  readonly corpus: readonly string[];
  /** Extra pre-tokens that must become single tokens (e.g. `safe`, `unsafe`). */
  readonly words?: readonly string[];
  readonly specialTokens?: readonly string[];
  /** Pad with unused tokens up to this size (default: no padding). */
  readonly targetSize?: number;
}

export interface Vocab {
  readonly tokens: string[];
  readonly types: number[];
  /** `left right` pairs in rank order (GGUF `tokenizer.ggml.merges`). */
  readonly merges: string[];
  /** Id of each special token text. */
  readonly special: ReadonlyMap<string, number>;
}

function splitOnSpecials(text: string, specials: readonly string[]): string[] {
  let parts = [text];
  for (const s of specials) parts = parts.flatMap((p) => p.split(s));
  return parts.filter((p) => p.length > 0);
}

export function buildVocab(opts: VocabOptions): Vocab {
  const specials = opts.specialTokens ?? LLAMA3_SPECIAL_TOKENS;
  const b2u = byteToUnicode();
  const encodeBytes = (s: string): string[] => Array.from(Buffer.from(s, 'utf8'), (b) => b2u[b] as string);

  const counts = new Map<string, number>();
  const add = (piece: string, n: number) => counts.set(piece, (counts.get(piece) ?? 0) + n);
  for (const text of opts.corpus) {
    for (const part of splitOnSpecials(text, specials)) for (const p of pretokenize(part)) add(p, 1);
  }
  // Required words get a large count so they are never left split by a vocabulary limit.
  for (const w of opts.words ?? []) add(w, 1000);

  const words = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([piece, n]) => ({ symbols: encodeBytes(piece), n }));

  const tokens: string[] = byteTokenOrder().map((b) => b2u[b] as string);
  const known = new Set(tokens);
  const merges: string[] = [];
  for (;;) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = `${w.symbols[i]} ${w.symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + w.n);
      }
    }
    if (pairs.size === 0) break;
    let best = '';
    let bestN = -1;
    for (const [k, n] of pairs) {
      if (n > bestN || (n === bestN && k < best)) {
        best = k;
        bestN = n;
      }
    }
    const sp = best.indexOf(' ');
    const left = best.slice(0, sp);
    const right = best.slice(sp + 1);
    const merged = left + right;
    merges.push(best);
    if (!known.has(merged)) {
      known.add(merged);
      tokens.push(merged);
    }
    for (const w of words) {
      const s = w.symbols;
      if (s.length < 2) continue;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === left && s[i + 1] === right) {
          out.push(merged);
          i++;
        } else out.push(s[i] as string);
      }
      w.symbols = out;
    }
  }

  const types: number[] = tokens.map(() => TokenType.normal);
  const target = opts.targetSize ?? tokens.length + specials.length;
  const padding = target - tokens.length - specials.length;
  if (padding < 0) {
    throw new RangeError(`vocabulary needs ${tokens.length + specials.length} tokens, target is ${target}`);
  }
  // Unused filler (not control tokens: llama.cpp scans every control token when parsing specials).
  for (let i = 0; i < padding; i++) {
    tokens.push(`<|unused_${i}|>`);
    types.push(TokenType.unused);
  }
  const special = new Map<string, number>();
  for (const s of specials) {
    special.set(s, tokens.length);
    tokens.push(s);
    types.push(TokenType.control);
  }
  return { tokens, types, merges, special };
}
