/**
 * Long-format choice data: one row per (individual, situation, alternative) with a 0/1 `chosen` flag
 * and numeric attribute columns (every column other than the four key columns). Errors name the line
 * (1-based, header = line 1) and column.
 */
import { readFileSync } from 'node:fs';
import { OrchardError } from '../../core/errors.ts';
import { parseCsv } from '../../data/loaders.ts';
import type { ChoiceIndividual, ChoicePanel, ChoiceSituation } from './data.ts';

const KEY_COLUMNS = ['individual', 'situation', 'alternative', 'chosen'] as const;

function invalid(line: number, column: string, message: string): OrchardError {
  const where = column === '' ? `line ${line}` : `line ${line}, column '${column}'`;
  return new OrchardError('DATA_INVALID', `choice CSV ${where}: ${message}`, [{ path: where, message }]);
}

interface PendingSituation {
  readonly line: number;
  readonly alternatives: Map<string, { line: number; chosen: number; attrs: Float64Array }>;
}

/** Parses long-format choice CSV text into a ChoicePanel (individuals and situations in first-seen order). */
export function parseChoiceCsv(text: string): ChoicePanel {
  // RFC 4180 records (quoted fields may hold commas, doubled quotes and newlines), blank lines skipped.
  const records = parseCsv(text, 'choice CSV')
    .map((r) => ({ line: r.line, fields: r.fields.map((f) => f.trim()) }))
    .filter((r) => r.fields.some((f) => f !== ''));
  const headerRecord = records[0];
  if (headerRecord === undefined) throw invalid(1, '', 'the file is empty');
  const headerLine = headerRecord.line;
  // Key columns match case-insensitively; attribute names keep their spelling for reports.
  const header = headerRecord.fields;
  const index = new Map<string, number>();
  for (const [k, name] of header.entries()) {
    if (name === '') throw invalid(headerLine, `#${k + 1}`, 'empty column name');
    if (index.has(name.toLowerCase())) throw invalid(headerLine, name, 'duplicate column');
    index.set(name.toLowerCase(), k);
  }
  for (const key of KEY_COLUMNS) {
    if (!index.has(key))
      throw invalid(headerLine, key, `missing required column (need ${KEY_COLUMNS.join(', ')})`);
  }
  const keySet = new Set<string>(KEY_COLUMNS);
  const attributeColumns = header
    .map((name, k) => ({ name, k }))
    .filter((c) => !keySet.has(c.name.toLowerCase()));
  if (attributeColumns.length === 0)
    throw invalid(headerLine, '', 'no attribute columns besides individual, situation, alternative, chosen');
  const d = attributeColumns.length;
  const col = (name: string): number => index.get(name) as number;
  const people = new Map<string, Map<string, PendingSituation>>();
  let rows = 0;
  for (const { line, fields } of records.slice(1)) {
    if (fields.length !== header.length)
      throw invalid(line, '', `expected ${header.length} fields, found ${fields.length}`);
    const person = fields[col('individual')] as string;
    const situation = fields[col('situation')] as string;
    const alternative = fields[col('alternative')] as string;
    for (const key of ['individual', 'situation', 'alternative'] as const) {
      if (fields[col(key)] === '') throw invalid(line, key, 'empty value');
    }
    const chosenText = fields[col('chosen')] as string;
    if (chosenText !== '0' && chosenText !== '1')
      throw invalid(line, 'chosen', `expected 0 or 1, got '${chosenText}'`);
    const attrs = new Float64Array(d);
    for (const [j, c] of attributeColumns.entries()) {
      const text = fields[c.k] as string;
      const value = text === '' ? Number.NaN : Number(text);
      if (!Number.isFinite(value)) throw invalid(line, c.name, `expected a finite number, got '${text}'`);
      attrs[j] = value;
    }
    let situations = people.get(person);
    if (situations === undefined) {
      situations = new Map();
      people.set(person, situations);
    }
    let pending = situations.get(situation);
    if (pending === undefined) {
      pending = { line, alternatives: new Map() };
      situations.set(situation, pending);
    }
    const previous = pending.alternatives.get(alternative);
    if (previous !== undefined) {
      throw invalid(
        line,
        'alternative',
        `alternative '${alternative}' repeats in situation '${situation}' of '${person}' (first on line ${previous.line})`,
      );
    }
    pending.alternatives.set(alternative, { line, chosen: Number(chosenText), attrs });
    rows++;
  }
  if (rows === 0) throw invalid(headerLine, '', 'no data rows after the header');
  const individuals: ChoiceIndividual[] = [];
  for (const [person, situations] of people) {
    const list: ChoiceSituation[] = [];
    for (const [situation, pending] of situations) {
      const alts = [...pending.alternatives.values()];
      const where = `situation '${situation}' of individual '${person}'`;
      if (alts.length < 2) throw invalid(pending.line, 'alternative', `${where} has only one alternative`);
      const chosen = alts.flatMap((a, j) => (a.chosen === 1 ? [j] : []));
      if (chosen.length !== 1) {
        throw invalid(
          pending.line,
          'chosen',
          `${where} has ${chosen.length} chosen alternatives; exactly one must be chosen`,
        );
      }
      const x = new Float64Array(alts.length * d);
      for (const [j, a] of alts.entries()) x.set(a.attrs, j * d);
      list.push({ x, chosen: chosen[0] as number });
    }
    individuals.push({ id: person, situations: list });
  }
  return { kind: 'choice', d, attributes: attributeColumns.map((c) => c.name), individuals };
}

/** Reads and parses a long-format choice CSV file. */
export function loadChoiceCsv(path: string): ChoicePanel {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new OrchardError(
      'DATA_INVALID',
      `cannot read choice CSV '${path}': ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return parseChoiceCsv(text);
}

/** Writes a choice panel in the same long format (the loader's inverse; used for examples and tests). */
export function choiceCsv(panel: ChoicePanel): string {
  const names = panel.attributes ?? Array.from({ length: panel.d }, (_, k) => `x${k + 1}`);
  const out = [[...KEY_COLUMNS, ...names].join(',')];
  for (const ind of panel.individuals) {
    for (const [s, sit] of ind.situations.entries()) {
      const J = sit.x.length / panel.d;
      for (let j = 0; j < J; j++) {
        const attrs = Array.from(sit.x.subarray(j * panel.d, (j + 1) * panel.d), (v) => String(v));
        out.push([ind.id, String(s + 1), String(j + 1), sit.chosen === j ? '1' : '0', ...attrs].join(','));
      }
    }
  }
  return `${out.join('\n')}\n`;
}
