/**
 * Parsing what Llama Guard writes: `safe`, or `unsafe` then a line of comma-separated codes.
 * Real outputs vary: the HF templates end at the assistant header without the usual blank line, so
 * the models typically start with `\n\n`; servers may leave `<|eot_id|>` in the text; spacing after
 * commas varies; codes outside the policy occur (e.g. S14 from the 1B). Those are tolerated, and
 * unknown codes are reported separately rather than dropped. Anything else is BAD_RESPONSE.
 */
import { GuardError } from './types.ts';

export interface ParsedVerdict {
  readonly verdict: 'safe' | 'unsafe';
  /** Codes in the model's order, deduplicated, upper-cased when they look like S<n>. */
  readonly categories: string[];
  /** Listed codes that are not in `known` (code-like tokens such as S15; prose is BAD_RESPONSE). */
  readonly unknownCategories: string[];
}

const SPECIAL_TOKEN_RE = /<\|(?:eot_id|end_of_text|eom_id)\|>/g;
/** What an unknown code must look like to be reported rather than rejected: S15, O7, C2… */
const CODE_LIKE_RE = /^[A-Za-z]{1,4}\d{1,3}$/;

export function parseGuardOutput(raw: string, known?: ReadonlySet<string>): ParsedVerdict {
  if (typeof raw !== 'string') throw new GuardError('BAD_RESPONSE', 'model output is not text');
  const text = raw.replace(SPECIAL_TOKEN_RE, '\n');
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const first = lines[0];
  if (first === undefined) throw new GuardError('BAD_RESPONSE', 'model output is empty');
  // The verdict may share its line with the codes ("unsafe S1,S2") in some server outputs.
  const m = /^(safe|unsafe)\b[\s:,]*(.*)$/i.exec(first);
  if (!m)
    throw new GuardError(
      'BAD_RESPONSE',
      `expected 'safe' or 'unsafe', got ${JSON.stringify(abbreviate(raw))}`,
    );
  const verdict = (m[1] as string).toLowerCase() as 'safe' | 'unsafe';
  if (verdict === 'safe') return { verdict, categories: [], unknownCategories: [] };
  const codeLine = m[2] !== '' ? (m[2] as string) : (lines[1] ?? '');
  const categories: string[] = [];
  const unknownCategories: string[] = [];
  for (const item of codeLine.split(/[,\s]+/)) {
    if (item === '') continue;
    const code = /^s\d+$/i.test(item) ? item.toUpperCase() : item;
    const isKnown = known === undefined ? CODE_LIKE_RE.test(code) : known.has(code);
    if (!isKnown && !CODE_LIKE_RE.test(code)) {
      throw new GuardError(
        'BAD_RESPONSE',
        `unexpected category list ${JSON.stringify(abbreviate(codeLine))}`,
      );
    }
    const target = isKnown ? categories : unknownCategories;
    if (!target.includes(code)) target.push(code);
  }
  return { verdict, categories, unknownCategories };
}

function abbreviate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
