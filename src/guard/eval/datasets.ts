/**
 * Labelled moderation data for `orchard guard eval`, in three formats:
 *
 * - **generic** (JSONL or CSV, by extension): `text` (or `prompt`), optional `response` (then the
 *   response is judged, in a two-turn conversation), `label` `safe`|`unsafe`, optional `categories`
 *   (a JSON array, or one string split on `,` `;` `|` or spaces), `language`, `id`, `image` (a file
 *   path, relative to the data file). Other fields are ignored.
 * - **xstest** (CSV as published in paul-rottger/exaggerated-safety): `id`/`id_v2`, `prompt`, `type`,
 *   `label`, `focus`, `note`. The v2 file has no `label` column: there the `contrast_*` types are the
 *   unsafe prompts. The category of a row is its type without `contrast_`, so each category pairs the
 *   safe prompts of a type with their unsafe contrasts. Language `en`.
 * - **openai** (JSONL, optionally .gz, as in openai/moderation-api-release `samples-1680.jsonl.gz`):
 *   `prompt` plus binary flags `S` `H` `V` `HR` `SH` `S3` `H2` `V2`; a flag left out means "unknown".
 *   A row is unsafe when any flag is 1, safe when every flag it has is 0; a row with no flag at all is
 *   skipped (reported in `skipped`). Categories are the OpenAI names of the set flags.
 *
 * Every malformed row is an OrchardError DATA_INVALID naming the file and 1-based line.
 */
import { readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { OrchardError } from '../../core/errors.ts';
import { parseCsv } from '../../data/loaders.ts';

export type EvalFormat = 'generic' | 'xstest' | 'openai';
export const EVAL_FORMATS: readonly EvalFormat[] = ['generic', 'xstest', 'openai'];

export interface EvalExample {
  readonly id: string;
  /** 1-based line in the file. */
  readonly line: number;
  /** The user turn. */
  readonly text: string;
  /** The assistant turn; when present the response is what is judged. */
  readonly response?: string;
  /** Ground truth. */
  readonly unsafe: boolean;
  /** Ground-truth categories (any naming: S-codes, OpenAI names, XSTest types). */
  readonly categories: readonly string[];
  readonly language?: string;
  /** Absolute path of an image for the user turn (generic format only). */
  readonly image?: string;
}

export interface EvalDataset {
  readonly path: string;
  readonly format: EvalFormat;
  readonly examples: EvalExample[];
  /** Rows left out on purpose (never malformed ones: those throw). */
  readonly skipped: Array<{ line: number; reason: string }>;
}

/** OpenAI moderation-evaluation flags and their category names (the dataset README's table). */
export const OPENAI_EVAL_FLAGS: ReadonlyArray<readonly [string, string]> = [
  ['S', 'sexual'],
  ['H', 'hate'],
  ['V', 'violence'],
  ['HR', 'harassment'],
  ['SH', 'self-harm'],
  ['S3', 'sexual/minors'],
  ['H2', 'hate/threatening'],
  ['V2', 'violence/graphic'],
];

function dataError(file: string, line: number | null, message: string): OrchardError {
  return new OrchardError('DATA_INVALID', `${file}${line === null ? '' : `:${line}`}: ${message}`);
}

interface Row {
  readonly line: number;
  readonly fields: Record<string, unknown>;
}

function readText(path: string): string {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw dataError(path, null, `cannot read: ${(e as Error).message}`);
  }
  if (path.endsWith('.gz')) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw dataError(path, null, `not a gzip file: ${(e as Error).message}`);
    }
  }
  return buf.toString('utf8').replace(/^\uFEFF/, '');
}

function fileKind(path: string): 'csv' | 'jsonl' {
  const ext = extname(path.replace(/\.gz$/, '')).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  throw dataError(
    path,
    null,
    `unknown file type '${ext}' (expected .csv, .jsonl or .ndjson, optionally .gz)`,
  );
}

function jsonlRows(text: string, file: string): Row[] {
  const rows: Row[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw dataError(file, i + 1, `not valid JSON (${(e as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw dataError(file, i + 1, 'each line must be a JSON object');
    rows.push({ line: i + 1, fields: value as Record<string, unknown> });
  }
  return rows;
}

function csvRows(text: string, file: string): { header: string[]; rows: Row[] } {
  const records = parseCsv(text, file);
  const head = records[0];
  if (head === undefined) return { header: [], rows: [] };
  const header = head.fields.map((h) => h.trim());
  const rows = records.slice(1).map((r) => {
    if (r.fields.length !== header.length)
      throw dataError(file, r.line, `expected ${header.length} columns, found ${r.fields.length}`);
    const fields: Record<string, unknown> = {};
    header.forEach((h, i) => {
      fields[h] = r.fields[i];
    });
    return { line: r.line, fields };
  });
  return { header, rows };
}

function optionalString(row: Row, key: string, file: string): string | undefined {
  const v = row.fields[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' && typeof v !== 'number')
    throw dataError(file, row.line, `'${key}' must be a string`);
  return String(v);
}

function requiredText(row: Row, keys: readonly string[], file: string): string {
  for (const key of keys) {
    const v = optionalString(row, key, file);
    if (v !== undefined && v.trim() !== '') return v;
  }
  throw dataError(file, row.line, `missing or empty '${keys.join("' / '")}'`);
}

function parseLabel(value: unknown, file: string, line: number): boolean {
  const s = typeof value === 'string' ? value.trim().toLowerCase() : value;
  if (s === 'unsafe') return true;
  if (s === 'safe') return false;
  throw dataError(file, line, `label must be 'safe' or 'unsafe', got ${JSON.stringify(value)}`);
}

function parseCategories(value: unknown, file: string, line: number): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (Array.isArray(value)) {
    if (!value.every((c) => typeof c === 'string' && c.trim() !== ''))
      throw dataError(file, line, 'categories must be non-empty strings');
    return value.map((c: string) => c.trim());
  }
  if (typeof value === 'string')
    return value
      .split(/[,;|\s]+/)
      .map((c) => c.trim())
      .filter((c) => c !== '');
  throw dataError(file, line, 'categories must be an array of strings or a string');
}

function loadGeneric(rows: Row[], file: string): EvalExample[] {
  return rows.map((row, i) => {
    const text = requiredText(row, ['text', 'prompt'], file);
    if (!('label' in row.fields)) throw dataError(file, row.line, "missing 'label' (safe or unsafe)");
    const unsafe = parseLabel(row.fields.label, file, row.line);
    const categories = parseCategories(row.fields.categories, file, row.line);
    if (!unsafe && categories.length > 0)
      throw dataError(file, row.line, `a safe example cannot have categories (${categories.join(', ')})`);
    const response = optionalString(row, 'response', file);
    const language = optionalString(row, 'language', file);
    const image = optionalString(row, 'image', file);
    return {
      id: optionalString(row, 'id', file) ?? String(i + 1),
      line: row.line,
      text,
      unsafe,
      categories,
      ...(response === undefined ? {} : { response }),
      ...(language === undefined ? {} : { language }),
      ...(image === undefined ? {} : { image: isAbsolute(image) ? image : resolve(dirname(file), image) }),
    };
  });
}

function loadXstest(header: readonly string[], rows: Row[], file: string): EvalExample[] {
  for (const col of ['prompt', 'type'])
    if (!header.includes(col))
      throw dataError(file, 1, `XSTest CSV needs a '${col}' column (found: ${header.join(', ')})`);
  const hasLabel = header.includes('label');
  return rows.map((row, i) => {
    const text = requiredText(row, ['prompt'], file);
    const type = requiredText(row, ['type'], file).trim();
    const unsafe = hasLabel ? parseLabel(row.fields.label, file, row.line) : type.startsWith('contrast_');
    return {
      id: optionalString(row, 'id', file) ?? optionalString(row, 'id_v2', file) ?? String(i + 1),
      line: row.line,
      text,
      unsafe,
      categories: [type.replace(/^contrast_/, '')],
      language: 'en',
    };
  });
}

function loadOpenAi(rows: Row[], file: string, skipped: EvalDataset['skipped']): EvalExample[] {
  const out: EvalExample[] = [];
  rows.forEach((row, i) => {
    const text = requiredText(row, ['prompt'], file);
    const categories: string[] = [];
    let known = 0;
    for (const [flag, name] of OPENAI_EVAL_FLAGS) {
      const v = row.fields[flag];
      if (v === undefined || v === null) continue;
      known++;
      if (v === 1 || v === true || v === '1') categories.push(name);
      else if (!(v === 0 || v === false || v === '0'))
        throw dataError(file, row.line, `flag ${flag} must be 0 or 1, got ${JSON.stringify(v)}`);
    }
    if (known === 0) {
      skipped.push({ line: row.line, reason: 'no category flag (label unknown)' });
      return;
    }
    out.push({ id: String(i + 1), line: row.line, text, unsafe: categories.length > 0, categories });
  });
  return out;
}

/** Guesses the format from the file's columns when the user gave none. */
export function detectFormat(path: string): EvalFormat {
  const kind = fileKind(path);
  const text = readText(path);
  if (kind === 'csv') {
    const firstLine = (text.split(/\r?\n/, 1)[0] ?? '').split(',').map((h) => h.trim());
    const looksXstest =
      firstLine.includes('prompt') &&
      firstLine.includes('type') &&
      firstLine.includes('focus') &&
      !firstLine.includes('text');
    return looksXstest ? 'xstest' : 'generic';
  }
  const first = text.split(/\r?\n/).find((l) => l.trim() !== '');
  if (first === undefined) return 'generic';
  try {
    const obj = JSON.parse(first) as Record<string, unknown>;
    const flagged = OPENAI_EVAL_FLAGS.some(([flag]) => flag in obj);
    return flagged && 'prompt' in obj && !('label' in obj) ? 'openai' : 'generic';
  } catch {
    return 'generic'; // the generic loader reports the bad line
  }
}

export function loadEvalDataset(path: string, format?: EvalFormat): EvalDataset {
  const chosen = format ?? detectFormat(path);
  const kind = fileKind(path);
  const text = readText(path);
  const skipped: EvalDataset['skipped'] = [];
  let examples: EvalExample[];
  if (chosen === 'xstest') {
    if (kind !== 'csv') throw dataError(path, null, 'the XSTest format is CSV');
    const { header, rows } = csvRows(text, path);
    examples = loadXstest(header, rows, path);
  } else if (chosen === 'openai') {
    if (kind !== 'jsonl') throw dataError(path, null, 'the OpenAI moderation-evaluation format is JSONL');
    examples = loadOpenAi(jsonlRows(text, path), path, skipped);
  } else {
    const rows = kind === 'csv' ? csvRows(text, path).rows : jsonlRows(text, path);
    examples = loadGeneric(rows, path);
  }
  if (examples.length === 0) throw dataError(path, null, 'no examples');
  return { path, format: chosen, examples, skipped };
}
