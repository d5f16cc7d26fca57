/**
 * Users' own federated data from CSV (RFC 4180, header row) or JSONL (one JSON object per line).
 * One example per row: a client-id column, a label column, and every other column a numeric feature.
 *
 * - Client ids (strings or numbers) map to dense indices in order of first appearance (`clientIds`).
 * - Labels: if every label is a number they map to indices in ascending numeric order, otherwise in
 *   ascending string order; `labelNames[i]` is the original label of class i.
 * - Test split, per client and seeded: client k holds out round(testFraction · n_k) of its rows, but
 *   always keeps at least one for training; the union of held-out rows is the server's test set.
 * Any bad row is an OrchardError('DATA_INVALID') naming the file, the 1-based line and the column.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { OrchardError } from '../core/errors.ts';
import { Rng } from '../core/rng.ts';
import { federatedFromPool, selectRows } from './federated.ts';
import type { DenseExamples, FederatedDataset } from './types.ts';

export interface FileDatasetOptions {
  readonly path: string;
  /** Inferred from the extension (.csv; .jsonl or .ndjson) when absent. */
  readonly format?: 'csv' | 'jsonl' | undefined;
  readonly clientColumn?: string | undefined;
  readonly labelColumn?: string | undefined;
  readonly testFraction?: number | undefined;
  readonly seed: number;
}

export interface FileDataset extends FederatedDataset {
  /** Original label of each class index. */
  readonly labelNames: readonly string[];
  /** Original client id of each client index. */
  readonly clientIds: readonly string[];
  /** Feature columns, in the order of the feature vector. */
  readonly featureNames: readonly string[];
}

function dataError(file: string, line: number | null, message: string): OrchardError {
  return new OrchardError('DATA_INVALID', `${file}${line === null ? '' : `:${line}`}: ${message}`);
}

export interface CsvRecord {
  /** 1-based line on which the record starts. */
  readonly line: number;
  readonly fields: string[];
}

/** RFC 4180 records: quoted fields may hold commas, newlines and doubled quotes; CRLF or LF line ends. */
export function parseCsv(text: string, file: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let i = 0;
  const n = text.length;
  const endRecord = () => {
    fields.push(field);
    field = '';
    // A completely empty line (e.g. the trailing newline) is not a record.
    if (!(fields.length === 1 && fields[0] === '')) records.push({ line: recordLine, fields });
    fields = [];
  };
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      if (field !== '')
        throw dataError(file, line, `quote inside an unquoted field (column ${fields.length + 1})`);
      const startLine = line;
      i++;
      for (;;) {
        if (i >= n) throw dataError(file, startLine, 'unterminated quoted field');
        const q = text[i];
        if (q === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q === '\n') line++;
        field += q;
        i++;
      }
      const next = text[i];
      if (i < n && next !== ',' && next !== '\n' && next !== '\r')
        throw dataError(file, line, `unexpected text after a closing quote (column ${fields.length + 1})`);
      continue;
    }
    if (c === ',') {
      fields.push(field);
      field = '';
      i++;
      continue;
    }
    if (c === '\r' && text[i + 1] === '\n') i++;
    if (c === '\n' || c === '\r') {
      endRecord();
      i++;
      line++;
      recordLine = line;
      continue;
    }
    field += c;
    i++;
  }
  if (field !== '' || fields.length > 0) endRecord();
  return records;
}

/** One parsed row before features and labels are typed. */
interface RawRow {
  readonly line: number;
  readonly client: string;
  readonly label: string | number;
  readonly features: Float64Array;
}

function parseNumber(s: string): number | null {
  const t = s.trim();
  if (t === '') return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : null;
}

function csvRows(text: string, file: string, clientColumn: string, labelColumn: string) {
  const records = parseCsv(text, file);
  const header = records[0];
  if (!header) throw dataError(file, null, 'file is empty (expected a header row)');
  const names = header.fields.map((f) => f.trim());
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw dataError(file, header.line, `duplicate column "${name}" in header`);
    seen.add(name);
  }
  const clientAt = names.indexOf(clientColumn);
  const labelAt = names.indexOf(labelColumn);
  if (clientAt < 0) throw dataError(file, header.line, `no client column "${clientColumn}" in header`);
  if (labelAt < 0) throw dataError(file, header.line, `no label column "${labelColumn}" in header`);
  const featureAt: number[] = [];
  for (let c = 0; c < names.length; c++) if (c !== clientAt && c !== labelAt) featureAt.push(c);
  const featureNames = featureAt.map((c) => names[c] as string);
  const rows: RawRow[] = [];
  for (let r = 1; r < records.length; r++) {
    const rec = records[r] as CsvRecord;
    if (rec.fields.length !== names.length)
      throw dataError(file, rec.line, `row has ${rec.fields.length} fields, header has ${names.length}`);
    const client = (rec.fields[clientAt] as string).trim();
    if (client === '') throw dataError(file, rec.line, `missing client id in column "${clientColumn}"`);
    const label = (rec.fields[labelAt] as string).trim();
    if (label === '') throw dataError(file, rec.line, `missing label in column "${labelColumn}"`);
    const features = new Float64Array(featureAt.length);
    for (let f = 0; f < featureAt.length; f++) {
      const raw = rec.fields[featureAt[f] as number] as string;
      const v = parseNumber(raw);
      if (v === null)
        throw dataError(file, rec.line, `column "${featureNames[f]}": "${raw}" is not a finite number`);
      features[f] = v;
    }
    rows.push({ line: rec.line, client, label, features });
  }
  return { featureNames, rows };
}

function jsonlRows(text: string, file: string, clientColumn: string, labelColumn: string) {
  const lines = text.split(/\r?\n/);
  let featureNames: string[] | null = null;
  const rows: RawRow[] = [];
  for (let l = 0; l < lines.length; l++) {
    const lineText = (lines[l] as string).trim();
    if (lineText === '') continue;
    const line = l + 1;
    let obj: unknown;
    try {
      obj = JSON.parse(lineText);
    } catch (e) {
      throw dataError(file, line, `invalid JSON (${(e as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
      throw dataError(file, line, 'expected a JSON object');
    const record = obj as Record<string, unknown>;
    const keys = Object.keys(record).filter((k) => k !== clientColumn && k !== labelColumn);
    if (featureNames === null) featureNames = keys;
    const client = record[clientColumn];
    if (!(typeof client === 'string' && client !== '') && typeof client !== 'number')
      throw dataError(file, line, `missing client id in column "${clientColumn}"`);
    const label = record[labelColumn];
    if (
      !(typeof label === 'string' && label.trim() !== '') &&
      !(typeof label === 'number' && Number.isFinite(label))
    )
      throw dataError(file, line, `missing label in column "${labelColumn}"`);
    for (const k of keys)
      if (!featureNames.includes(k)) throw dataError(file, line, `column "${k}" is not in the first row`);
    const features = new Float64Array(featureNames.length);
    for (let f = 0; f < featureNames.length; f++) {
      const name = featureNames[f] as string;
      const v = record[name];
      if (v === undefined) throw dataError(file, line, `column "${name}" is missing`);
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw dataError(file, line, `column "${name}": ${JSON.stringify(v)} is not a finite number`);
      features[f] = v;
    }
    rows.push({
      line,
      client: String(client),
      label: typeof label === 'string' ? label.trim() : label,
      features,
    });
  }
  return { featureNames: featureNames ?? [], rows };
}

function inferFormat(path: string): 'csv' | 'jsonl' {
  const ext = extname(path).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  throw new OrchardError(
    'DATA_INVALID',
    `${path}: cannot tell the format from "${ext}"; set format to csv or jsonl`,
  );
}

/** Loads a CSV/JSONL file of labelled examples as a federated dataset. */
export function loadFileDataset(opts: FileDatasetOptions): FileDataset {
  const file = opts.path;
  const clientColumn = opts.clientColumn ?? 'client_id';
  const labelColumn = opts.labelColumn ?? 'label';
  const testFraction = opts.testFraction ?? 0.2;
  if (!(testFraction > 0 && testFraction < 1))
    throw new OrchardError('INVALID_ARGUMENT', `testFraction must be in (0, 1), got ${testFraction}`);
  if (clientColumn === labelColumn)
    throw new OrchardError('INVALID_ARGUMENT', `client and label column are both "${clientColumn}"`);
  const format = opts.format ?? inferFormat(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new OrchardError('DATA_INVALID', `${file}: cannot read (${(e as Error).message})`);
  }
  const { featureNames, rows } =
    format === 'csv'
      ? csvRows(text, file, clientColumn, labelColumn)
      : jsonlRows(text, file, clientColumn, labelColumn);
  if (rows.length === 0) throw dataError(file, null, 'no examples');
  if (featureNames.length === 0) throw dataError(file, null, 'no feature columns');

  // Labels: numeric order if all numeric, else string order.
  const numericLabels = rows.every((r) => typeof r.label === 'number' || parseNumber(r.label) !== null);
  const labelKey = (r: RawRow): string =>
    numericLabels ? String(typeof r.label === 'number' ? r.label : parseNumber(r.label)) : String(r.label);
  const distinct = [...new Set(rows.map(labelKey))];
  distinct.sort(numericLabels ? (a, b) => Number(a) - Number(b) : (a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const labelIndex = new Map(distinct.map((name, i) => [name, i]));

  const clientIndex = new Map<string, number>();
  const dim = featureNames.length;
  const n = rows.length;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  const owner = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i] as RawRow;
    x.set(r.features, i * dim);
    y[i] = labelIndex.get(labelKey(r)) as number;
    let k = clientIndex.get(r.client);
    if (k === undefined) {
      k = clientIndex.size;
      clientIndex.set(r.client, k);
    }
    owner[i] = k;
  }
  const pool: DenseExamples = { kind: 'dense', n, dim, x, y };
  const numClients = clientIndex.size;

  // Per-client seeded holdout.
  const members: number[][] = Array.from({ length: numClients }, () => []);
  for (let i = 0; i < n; i++) (members[owner[i] as number] as number[]).push(i);
  const rng = new Rng(opts.seed);
  const offsets = new Int32Array(numClients + 1);
  const train: number[] = [];
  const test: number[] = [];
  for (let k = 0; k < numClients; k++) {
    const list = rng.shuffle(members[k] as number[]);
    const nTest = Math.min(Math.round(testFraction * list.length), list.length - 1);
    for (let t = 0; t < list.length; t++) (t < nTest ? test : train).push(list[t] as number);
    offsets[k + 1] = train.length;
  }
  if (test.length === 0)
    throw dataError(file, null, `a ${testFraction} per-client test split of ${n} examples holds out nothing`);
  const fed = federatedFromPool(
    `file:${file}`,
    pool,
    { offsets, indices: Int32Array.from(train) },
    selectRows(pool, test),
    distinct.length,
  );
  return {
    ...fed,
    labelNames: distinct,
    clientIds: [...clientIndex.keys()],
    featureNames,
  };
}
