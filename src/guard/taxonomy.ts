/**
 * The MLCommons hazard taxonomy as Llama Guard 3 prints it in its prompts, and the policy (which
 * categories, which excluded) a request is judged against.
 *
 * Names are the ones in the models' chat templates ("S3: Sex Crimes."), which differ from the model
 * cards' table headings for three categories (S3 Sex-Related Crimes, S4 Child Sexual Exploitation,
 * S11 Suicide & Self-Harm); the prompt text is what the models were trained on, so it wins.
 */
import { type Category, GuardError, type GuardModelVariant } from './types.ts';

export const HAZARD_CATEGORIES: readonly Category[] = [
  { code: 'S1', name: 'Violent Crimes' },
  { code: 'S2', name: 'Non-Violent Crimes' },
  { code: 'S3', name: 'Sex Crimes' },
  { code: 'S4', name: 'Child Exploitation' },
  { code: 'S5', name: 'Defamation' },
  { code: 'S6', name: 'Specialized Advice' },
  { code: 'S7', name: 'Privacy' },
  { code: 'S8', name: 'Intellectual Property' },
  { code: 'S9', name: 'Indiscriminate Weapons' },
  { code: 'S10', name: 'Hate' },
  { code: 'S11', name: 'Self-Harm' },
  { code: 'S12', name: 'Sexual Content' },
  { code: 'S13', name: 'Elections' },
  { code: 'S14', name: 'Code Interpreter Abuse' },
];

/** Headings the model cards use where they differ from the prompt names (for display only). */
export const MODEL_CARD_NAMES: Readonly<Record<string, string>> = {
  S3: 'Sex-Related Crimes',
  S4: 'Child Sexual Exploitation',
  S11: 'Suicide & Self-Harm',
};

/** The 1B and Vision models were trained on S1–S13; the 8B adds S14 Code Interpreter Abuse. */
export function defaultCategories(variant: GuardModelVariant): readonly Category[] {
  return variant === '8b' ? HAZARD_CATEGORIES : HAZARD_CATEGORIES.slice(0, 13);
}

/** A validated policy: the category list given to the template, the excluded codes, and what remains. */
export interface Policy {
  readonly categories: readonly Category[];
  readonly excluded: readonly string[];
  /** `categories` minus `excluded`, in order: what the prompt lists. */
  readonly active: readonly Category[];
}

const CODE_RE = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * Checks a custom list (unique codes of letters/digits, non-empty single-line names) and the
 * exclusions (each must name a listed category: a typo would otherwise silently judge against the
 * full policy). Excluding everything is an error too: the prompt would have no categories.
 */
export function resolvePolicy(
  variant: GuardModelVariant,
  categories?: readonly Category[],
  excluded?: readonly string[],
): Policy {
  const list = categories ?? defaultCategories(variant);
  if (list.length === 0) throw new GuardError('INVALID_CATEGORIES', 'the category list is empty');
  const seen = new Set<string>();
  for (const c of list) {
    if (typeof c?.code !== 'string' || !CODE_RE.test(c.code)) {
      throw new GuardError(
        'INVALID_CATEGORIES',
        `category code ${JSON.stringify(c?.code)} must be 1–32 letters, digits, '_' or '-' (e.g. S1)`,
      );
    }
    if (seen.has(c.code)) throw new GuardError('INVALID_CATEGORIES', `category ${c.code} is listed twice`);
    seen.add(c.code);
    if (typeof c.name !== 'string' || c.name.trim() === '' || /[\r\n]/.test(c.name)) {
      throw new GuardError('INVALID_CATEGORIES', `category ${c.code} needs a non-empty one-line name`);
    }
    if (c.description !== undefined && typeof c.description !== 'string') {
      throw new GuardError('INVALID_CATEGORIES', `category ${c.code}: description must be a string`);
    }
  }
  const ex = [...new Set(excluded ?? [])];
  for (const code of ex) {
    if (!seen.has(code)) {
      throw new GuardError(
        'UNKNOWN_CATEGORY',
        `cannot exclude ${JSON.stringify(code)}: not in the policy (${[...seen].join(', ')})`,
      );
    }
  }
  const active = list.filter((c) => !ex.includes(c.code));
  if (active.length === 0) throw new GuardError('INVALID_CATEGORIES', 'every category is excluded');
  return { categories: list, excluded: ex, active };
}

/**
 * The policy line(s) of one category: `S1: Violent Crimes.` then the description lines, if any.
 * A name that already ends in '.' (trailing spaces aside) gets no second one, so the templates' own
 * dictionary values ("Violent Crimes.", "Custom category 1. \n…") round-trip byte for byte.
 */
export function categoryText(c: Category): string {
  const name = c.name.trimEnd().endsWith('.') ? c.name : `${c.name}.`;
  return c.description !== undefined && c.description !== '' ? `${name}\n${c.description}` : name;
}

/**
 * Reads a categories file's JSON: either a list `[{code, name, description?}]` or the chat
 * templates' own dictionary form `{"S1": "Name.\ndescription"}` (first line = name).
 */
export function parseCategories(value: unknown): Category[] {
  if (Array.isArray(value)) {
    return value.map((v, i) => {
      if (typeof v !== 'object' || v === null) {
        throw new GuardError('INVALID_CATEGORIES', `categories[${i}] must be an object {code, name}`);
      }
      const { code, name, description } = v as Record<string, unknown>;
      if (typeof code !== 'string' || typeof name !== 'string') {
        throw new GuardError('INVALID_CATEGORIES', `categories[${i}] needs string "code" and "name"`);
      }
      if (description !== undefined && typeof description !== 'string') {
        throw new GuardError('INVALID_CATEGORIES', `categories[${i}].description must be a string`);
      }
      return description === undefined ? { code, name } : { code, name, description };
    });
  }
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value as Record<string, unknown>).map(([code, text]) => {
      if (typeof text !== 'string') {
        throw new GuardError('INVALID_CATEGORIES', `categories.${code} must be a string`);
      }
      const nl = text.indexOf('\n');
      return nl < 0
        ? { code, name: text }
        : { code, name: text.slice(0, nl), description: text.slice(nl + 1) };
    });
  }
  throw new GuardError('INVALID_CATEGORIES', 'categories must be a JSON array or object');
}
