/**
 * `orchard logit`: fit the convex latent-effect logit to a long-format choice CSV (`fit`), or run the
 * simulated reproduction against the pooled, per-individual and mixed logit baselines (`repro`).
 */
import type { Command } from 'commander';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import {
  compilePanel,
  fitLatentLogit,
  fitLatentLogitPath,
  type LatentLogitFit,
  loadChoiceCsv,
  type PathResult,
  reproTable,
  runLogitRepro,
  writeLogitReport,
} from '../../stats/latent-logit/index.ts';
import { parseIntegerOption } from '../options.ts';

export interface LogitFitFlags {
  readonly data?: string;
  readonly lambda1?: number;
  readonly lambda2?: number;
  readonly path?: boolean;
  readonly holdout?: number;
  readonly seed?: number;
  readonly json?: boolean;
}

export interface LogitReproFlags {
  readonly out: string;
  readonly quick?: boolean;
  readonly seed?: number;
  readonly restarts?: number;
  readonly quiet?: boolean;
}

function parseNonNegative(flag: string, value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < 0) {
    throw new ConfigError(
      [{ path: flag, message: `expected a finite number ≥ 0, got '${value}'` }],
      'arguments',
    );
  }
  return v;
}

function parseFraction(flag: string, value: string): number {
  const v = Number(value);
  if (!(v > 0 && v < 1))
    throw new ConfigError(
      [{ path: flag, message: `expected a number in (0, 1), got '${value}'` }],
      'arguments',
    );
  return v;
}

/** Bad data is bad input: report it like a config problem (exit 2, nothing fitted). */
function loadData(path: string): ReturnType<typeof compilePanel> & { attributes: readonly string[] } {
  try {
    const panel = loadChoiceCsv(path);
    return { ...compilePanel(panel), attributes: panel.attributes ?? [] };
  } catch (e) {
    if (e instanceof OrchardError && e.code !== 'CONFIG_INVALID') {
      throw new ConfigError(
        e.issues.length > 0 ? e.issues : [{ path: '', message: e.message }],
        `data file '${path}'`,
      );
    }
    throw e;
  }
}

function certificateText(fit: LatentLogitFit): string {
  const c = fit.certificate;
  return (
    `${c.converged ? 'converged' : 'NOT converged'} after ${c.iterations} iterations ` +
    `(relative objective change ${c.relativeChange.toExponential(1)} ≤ ${c.tol}, ` +
    `relative prox-gradient residual ${c.relativeResidual.toExponential(1)} ≤ ${c.optTol}, ${c.restarts} restarts)`
  );
}

export function logitFitCommand(flags: LogitFitFlags): void {
  const issues = [];
  if (flags.data === undefined)
    issues.push({ path: '--data', message: 'required: a long-format choice CSV' });
  const fixed = flags.lambda1 !== undefined || flags.lambda2 !== undefined;
  if (fixed && (flags.lambda1 === undefined || flags.lambda2 === undefined)) {
    issues.push({ path: '--lambda1/--lambda2', message: 'give both --lambda1 and --lambda2, or use --path' });
  }
  if (fixed && flags.path === true)
    issues.push({ path: '--path', message: 'give either --path or fixed --lambda1/--lambda2, not both' });
  if (issues.length > 0) throw new ConfigError(issues, 'arguments');
  const panel = loadData(flags.data as string);
  let fit: LatentLogitFit;
  let path: PathResult | undefined;
  if (flags.lambda1 !== undefined && flags.lambda2 !== undefined) {
    fit = fitLatentLogit(panel, { lambda1: flags.lambda1, lambda2: flags.lambda2 });
  } else {
    path = fitLatentLogitPath(panel, { holdoutFraction: flags.holdout ?? 0.25, seed: flags.seed ?? 0 });
    fit = path.fit;
  }
  const names = panel.attributes;
  const coefficients = Object.fromEntries(names.map((name, k) => [name, fit.w[k] ?? 0]));
  if (flags.json === true) {
    const individuals = panel.ids.map((id, i) => ({
      id,
      beta: Array.from(fit.B.subarray(i * fit.d, (i + 1) * fit.d)),
    }));
    const out = {
      individuals: panel.n,
      situations: panel.situations,
      attributes: names,
      lambda1: fit.lambda1,
      lambda2: fit.lambda2,
      objective: fit.objective,
      nll: fit.nll,
      rank: fit.rank,
      singularValues: fit.singularValues,
      shared: coefficients,
      certificate: fit.certificate,
      seconds: fit.seconds,
      ...(path === undefined ? {} : { lambdaMax: path.lambdaMax, selected: path.best, path: path.points }),
      ...(path?.rankSelection === undefined
        ? {}
        : {
            rankSelection: {
              rank: path.rankSelection.rank,
              heldOutNllByRank: path.rankSelection.heldOutNll,
              U: Array.from(path.rankSelection.U),
            },
          }),
      coefficients: individuals,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const lines = [
    `${panel.n} individuals, ${panel.situations} choice situations, ${fit.d} attributes`,
    path === undefined
      ? `λ1 = ${fit.lambda1}, λ2 = ${fit.lambda2}`
      : `λ selected on a ${path.points.length}-point path by held-out NLL ${path.best.heldOutNll.toFixed(5)}: ` +
        `λ1 = ${fit.lambda1.toPrecision(4)} (${path.best.lambda1Ratio.toPrecision(3)} λ1_max), ` +
        `λ2 = ${fit.lambda2.toPrecision(4)} (${path.best.lambda2Ratio.toPrecision(3)} λ2_max)`,
    `objective ${fit.objective.toFixed(6)}, mean NLL ${fit.nll.toFixed(6)}, rank(U) = ${fit.rank}, nonzeros(w) = ${fit.nonzeros}`,
    ...(path?.rankSelection === undefined
      ? []
      : [
          `rank chosen by held-out truncation (one-SE rule): ${path.rankSelection.rank} ` +
            `(held-out NLL by rank 0…${path.best.rank}: ${path.rankSelection.heldOutNll.map((v) => v.toFixed(4)).join(' ')})`,
        ]),
    certificateText(fit),
    'shared effect w:',
    ...names.map(
      (name, k) => `  ${name.padEnd(Math.max(...names.map((n) => n.length)))}  ${(fit.w[k] ?? 0).toFixed(5)}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export async function logitReproCommand(flags: LogitReproFlags): Promise<void> {
  const quiet = flags.quiet === true;
  const started = performance.now();
  const result = runLogitRepro({
    quick: flags.quick === true,
    ...(flags.seed === undefined ? {} : { seed: flags.seed }),
    ...(flags.restarts === undefined ? {} : { restarts: flags.restarts }),
    log: (message) => {
      if (!quiet)
        process.stderr.write(
          `${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s ${message}\n`,
        );
    },
  });
  const paths = await writeLogitReport(result, flags.out);
  process.stdout.write(`\n${reproTable(result)}\n\nwrote ${paths.results}\n      ${paths.report}\n`);
}

export function registerLogit(program: Command): void {
  const logit = program
    .command('logit')
    .description('convex latent-effect logit (sparse shared + low-rank individual effects)');
  logit
    .command('fit')
    .description('fit to a long-format choice CSV (individual, situation, alternative, chosen, attributes…)')
    .option('-d, --data <file>', 'choice data CSV')
    .option('--lambda1 <x>', 'ℓ1 penalty on the shared effect w', (v: string) =>
      parseNonNegative('--lambda1', v),
    )
    .option('--lambda2 <y>', 'nuclear-norm penalty on the latent effects U', (v: string) =>
      parseNonNegative('--lambda2', v),
    )
    .option('--path', 'choose λ on a warm-started path by held-out likelihood (the default without λs)')
    .option(
      '--holdout <fraction>',
      'share of each individual’s situations held out on the path',
      (v: string) => parseFraction('--holdout', v),
    )
    .option('-s, --seed <n>', 'seed of the holdout split', (v: string) => parseIntegerOption('--seed', v))
    .option('--json', 'print the full fit as JSON')
    .action((flags: LogitFitFlags) => {
      logitFitCommand(flags);
    });
  logit
    .command('repro')
    .description(
      'simulated reproduction: convex model vs pooled, per-individual and mixed logit; writes a report',
    )
    .option('-o, --out <dir>', 'output directory', './orchard-out/logit')
    .option('--quick', 'small settings (well under a minute)')
    .option('-s, --seed <n>', 'seed', (v: string) => parseIntegerOption('--seed', v))
    .option('--restarts <k>', 'random restarts for the stability measure (default 3)', (v: string) => {
      const k = parseIntegerOption('--restarts', v);
      if (k < 1) throw new ConfigError([{ path: '--restarts', message: 'must be ≥ 1' }], 'arguments');
      return k;
    })
    .option('-q, --quiet', 'no progress messages')
    .action(async (flags: LogitReproFlags) => {
      await logitReproCommand(flags);
    });
}
