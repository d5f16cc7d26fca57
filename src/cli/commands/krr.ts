/**
 * `orchard krr`: online hyperparameter learning for kernel ridge regression.
 *   orchard krr run --data file.csv | --synthetic [--method online|fixed|grid|random|all] [--signal recent|loo|both]
 *     [--every n] [--probe-every n] [--json]
 *   orchard krr repro [--out dir] [--quick] [--windows 144,288,576] [--held-out]
 */
import type { Command } from 'commander';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import { METHODS, type Method, resolveKrrConfig } from '../../stats/online-krr/config.ts';
import {
  loadPemsCsv,
  type MissingPolicy,
  type PemsColumn,
  type Series,
  trafficSeries,
} from '../../stats/online-krr/data.ts';
import { type KrrRunResult, runKrr } from '../../stats/online-krr/forecaster.ts';
import type { KernelType } from '../../stats/online-krr/kernels.ts';
import {
  heldOutSpecs,
  reproduceKrr,
  reproTable,
  type SeriesSpec,
  STUDY_WINDOWS,
  seriesSpecs,
  writeKrrReport,
} from '../../stats/online-krr/report.ts';
import { parseIntegerOption } from '../options.ts';

export interface KrrRunFlags {
  readonly data?: string;
  readonly synthetic?: boolean;
  readonly days?: number;
  readonly seed?: number;
  readonly column?: string;
  readonly station?: string;
  readonly missing?: string;
  readonly method: string;
  readonly kernel: string;
  readonly window?: number;
  readonly horizon?: number;
  readonly lags?: number;
  readonly lambda?: number;
  readonly gamma?: number;
  readonly features?: string;
  readonly target?: string;
  readonly signal?: string;
  readonly every?: number;
  readonly probeEvery?: number;
  readonly guardPoints?: number;
  readonly json?: boolean;
}

function parseNumberOption(flag: string, value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v)) {
    throw new ConfigError([{ path: flag, message: `expected a number, got '${value}'` }], 'arguments');
  }
  return v;
}

function usage(path: string, message: string): ConfigError {
  return new ConfigError([{ path, message }], 'arguments');
}

/** Loads the series named by the flags; unreadable or invalid data is a usage error (nothing run). */
export function resolveSeries(flags: KrrRunFlags): Series {
  if ((flags.data === undefined) === (flags.synthetic !== true)) {
    throw usage('', 'give exactly one of --data <file.csv> or --synthetic');
  }
  if (flags.synthetic === true) return trafficSeries({ days: flags.days ?? 14, seed: flags.seed ?? 1 });
  const column = (flags.column ?? 'flow') as PemsColumn;
  if (!['flow', 'speed', 'occupancy'].includes(column))
    throw usage('--column', 'must be flow, speed or occupancy');
  const missing = (flags.missing ?? 'interpolate') as MissingPolicy;
  if (!['error', 'interpolate', 'drop'].includes(missing))
    throw usage('--missing', 'must be error, interpolate or drop');
  try {
    return loadPemsCsv(flags.data as string, {
      column,
      missing,
      ...(flags.station === undefined ? {} : { station: flags.station }),
    });
  } catch (e) {
    if (e instanceof OrchardError && !(e instanceof ConfigError))
      throw usage('--data', `${flags.data}: ${e.message}`);
    throw e;
  }
}

function runSummary(r: KrrRunResult): Record<string, unknown> {
  const last = r.trajectory[r.trajectory.length - 1];
  return {
    method: r.method,
    series: r.series,
    horizon: r.horizon,
    evaluated: r.evaluated,
    rmse: r.rmse,
    mae: r.mae,
    persistenceRmse: r.persistenceRmse,
    persistenceMae: r.persistenceMae,
    compute: r.compute,
    maxDrift: r.maxDrift,
    wallMs: r.wallMs,
    finalLambda: last?.lambda,
    finalGamma: last?.gamma,
  };
}

export function krrRunCommand(flags: KrrRunFlags): void {
  const methods: Method[] = flags.method === 'all' ? [...METHODS] : [flags.method as Method];
  if (!methods.every((m) => METHODS.includes(m)))
    throw usage('--method', `must be ${METHODS.join(', ')} or all`);
  const input = {
    kernel: { type: flags.kernel as KernelType },
    ...(flags.window === undefined ? {} : { window: flags.window }),
    ...(flags.horizon === undefined ? {} : { horizon: flags.horizon }),
    ...(flags.lags === undefined ? {} : { lags: flags.lags }),
    ...(flags.lambda === undefined ? {} : { lambda: flags.lambda }),
    ...(flags.gamma === undefined ? {} : { gamma: flags.gamma }),
    ...(flags.features === undefined ? {} : { features: flags.features as 'levels' }),
    ...(flags.target === undefined ? {} : { target: flags.target as 'delta' }),
    online: {
      ...(flags.signal === undefined ? {} : { signal: flags.signal as 'loo' }),
      ...(flags.every === undefined ? {} : { every: flags.every }),
      ...(flags.probeEvery === undefined ? {} : { probeEvery: flags.probeEvery }),
      ...(flags.guardPoints === undefined ? {} : { guardPoints: flags.guardPoints }),
    },
  };
  for (const method of methods) resolveKrrConfig(input, method); // config errors before any data is read
  const series = resolveSeries(flags);
  const results: KrrRunResult[] = [];
  for (const method of methods) {
    try {
      results.push(runKrr(series, method, input));
    } catch (e) {
      // A series too short for the window is a usage problem: nothing was run.
      if (e instanceof OrchardError && e.code === 'DATA_INVALID') throw usage('--window', e.message);
      throw e;
    }
  }
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(results.map(runSummary), null, 2)}\n`);
    return;
  }
  const first = results[0] as KrrRunResult;
  process.stdout.write(
    `${first.series}: ${first.evaluated} forecasts, horizon ${first.horizon}; persistence RMSE ${first.persistenceRmse.toFixed(4)}\n`,
  );
  for (const r of results) {
    const last = r.trajectory[r.trajectory.length - 1];
    process.stdout.write(
      `${r.method.padEnd(7)} RMSE ${r.rmse.toFixed(4)}  MAE ${r.mae.toFixed(4)}  ${(r.compute.flops / 1e6).toFixed(1)} MFLOP (tuning ${(r.compute.tuningFlops / 1e6).toFixed(1)})  ${r.wallMs.toFixed(0)} ms  λ ${last?.lambda.toPrecision(3)} γ ${last?.gamma.toPrecision(3)}\n`,
    );
  }
}

/** `--windows 144,288,576`: window sizes for the sensitivity study (integers >= 4). */
export function parseWindowList(value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  const out = parts.map((p) => Number(p));
  if (parts.some((p) => p === '') || out.some((w) => !Number.isInteger(w) || w < 4)) {
    throw usage('--windows', `expected comma-separated window sizes (integers >= 4), got '${value}'`);
  }
  return out;
}

/** `--series a,b`: the named series of the chosen set, in the set's order; an unknown name is a usage error. */
export function selectSeries(specs: readonly SeriesSpec[], value: string): SeriesSpec[] {
  const names = value.split(',').map((p) => p.trim());
  const known = specs.map((s) => s.series.name);
  const unknown = names.filter((n) => !known.includes(n));
  if (names.some((n) => n === '') || unknown.length > 0) {
    throw usage(
      '--series',
      `unknown series '${unknown.join(',') || value}'; this set has ${known.join(', ')}`,
    );
  }
  return specs.filter((s) => names.includes(s.series.name));
}

export async function krrReproCommand(flags: {
  out: string;
  quick?: boolean;
  quiet?: boolean;
  windows?: number[];
  heldOut?: boolean;
  series?: string;
}): Promise<void> {
  const quick = flags.quick === true;
  const heldOut = flags.heldOut === true;
  const all = heldOut ? heldOutSpecs() : seriesSpecs(quick);
  const specs = flags.series === undefined ? undefined : selectSeries(all, flags.series);
  // A selection of the study series keeps its window study (held-out runs have none).
  const windows =
    flags.windows ?? (specs !== undefined && !heldOut && !quick ? [...STUDY_WINDOWS] : undefined);
  const result = reproduceKrr({
    quick,
    ...(heldOut || specs !== undefined ? { specs: specs ?? all } : {}),
    ...(windows === undefined ? {} : { windows }),
    onProgress: (m) => {
      if (flags.quiet !== true) process.stderr.write(`krr repro: ${m}\n`);
    },
  });
  const paths = await writeKrrReport(result, flags.out);
  process.stdout.write(`${reproTable(result)}\nwrote ${paths.results}\n      ${paths.report}\n`);
}

export function registerKrr(program: Command): void {
  const krr = program
    .command('krr')
    .description('online hyperparameter learning for kernel ridge regression');
  krr
    .command('run')
    .description('forecast a series with sliding-window KRR and report error and counted compute')
    .option('-d, --data <file>', 'PeMS-style CSV (timestamp, station, flow/speed/occupancy)')
    .option('--synthetic', 'use the synthetic traffic generator')
    .option('--days <n>', 'synthetic: days of 5-minute data (default 14)', (v: string) =>
      parseIntegerOption('--days', v),
    )
    .option('-s, --seed <n>', 'synthetic: seed', (v: string) => parseIntegerOption('--seed', v))
    .option('--column <name>', 'CSV column: flow, speed or occupancy', 'flow')
    .option('--station <id>', 'CSV station to use (required when the file has several)')
    .option('--missing <policy>', 'missing CSV values: error, interpolate or drop', 'interpolate')
    .option('-m, --method <name>', `${METHODS.join(', ')} or all`, 'online')
    .option('-k, --kernel <type>', 'rbf, laplacian, linear or polynomial', 'rbf')
    .option('-w, --window <n>', 'sliding window size', (v: string) => parseIntegerOption('--window', v))
    .option('--horizon <n>', 'forecast horizon in steps', (v: string) => parseIntegerOption('--horizon', v))
    .option('--lags <n>', 'lagged values per feature vector', (v: string) => parseIntegerOption('--lags', v))
    .option('--lambda <x>', 'initial λ', (v: string) => parseNumberOption('--lambda', v))
    .option('--gamma <x>', 'initial γ', (v: string) => parseNumberOption('--gamma', v))
    .option('--features <kind>', 'levels or differences (default levels)')
    .option('--target <kind>', 'delta (y[t+h] − y[t], default) or level')
    .option(
      '--signal <kind>',
      'online validation signal: recent (most recent forecast errors, default), loo (leave-block-out) or both (geometric mean)',
    )
    .option('--every <n>', 'online: one hyperparameter step every n points (default 96)', (v: string) =>
      parseIntegerOption('--every', v),
    )
    .option(
      '--probe-every <n>',
      'online, recent signal: at most one coarse 3×3 probe per n steps, when the gradient is flat (default 8; 0 = off)',
      (v: string) => parseIntegerOption('--probe-every', v),
    )
    .option(
      '--guard-points <n>',
      'online: undo a move followed by a drift refresh within n points and cap conditioning there (default 96; 0 = off)',
      (v: string) => parseIntegerOption('--guard-points', v),
    )
    .option('--json', 'machine-readable output')
    .action((flags: KrrRunFlags) => {
      krrRunCommand(flags);
    });
  krr
    .command('repro')
    .description(
      'reproduce the online-vs-periodic-tuning comparison; writes krr-results.json and krr-report.html',
    )
    .option('-o, --out <dir>', 'output directory', './orchard-out/krr')
    .option('--quick', 'small series (well under a minute)')
    .option('-q, --quiet', 'no progress on stderr')
    .option(
      '--windows <list>',
      'window sizes for the sensitivity study, e.g. 144,288,576 (default 144,288; --quick: 72,96)',
      parseWindowList,
    )
    .option(
      '--held-out',
      'instead: the main methods on eight held-out series (other seeds and motes; no window study)',
    )
    .option(
      '--series <names>',
      'only these series of the chosen set, comma-separated names (e.g. sensor-mote4-temperature); selected study series skip the step-interval sensitivity runs',
    )
    .action(
      async (flags: {
        out: string;
        quick?: boolean;
        quiet?: boolean;
        windows?: number[];
        heldOut?: boolean;
        series?: string;
      }) => {
        await krrReproCommand(flags);
      },
    );
}
