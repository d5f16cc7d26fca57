/** `orchard simulate`: run a preset or config file and write results.json, curves.csv, report.html. */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { type ExperimentConfig, loadExperimentConfig } from '../../experiment/config.ts';
import { presetConfig } from '../../experiment/presets.ts';
import { runExperiment } from '../../experiment/run.ts';
import type { RunInfo, RunOptions } from '../../experiment/types.ts';
import { summaryText, writeReport } from '../../report/index.ts';
import { parseIntegerOption } from '../options.ts';

export interface SimulateFlags {
  readonly config?: string;
  readonly preset?: string;
  readonly out: string;
  readonly seed?: number;
  readonly quiet?: boolean;
}

/** Picks and validates the config; every problem is a ConfigError, thrown before anything runs. */
export function resolveConfig(flags: SimulateFlags): ExperimentConfig {
  if (flags.config !== undefined && flags.preset !== undefined) {
    throw new ConfigError([{ path: '', message: 'give either --config or --preset, not both' }], 'arguments');
  }
  const config =
    flags.config !== undefined ? loadExperimentConfig(flags.config) : presetConfig(flags.preset ?? 'default');
  // The seed is already a validated integer; everything else stays as validated.
  return flags.seed === undefined ? config : { ...config, seed: flags.seed };
}

const BAR_TOTAL = 1000;

function progressReporter(quiet: boolean): { options: RunOptions; stop: () => void } {
  if (quiet) return { options: {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{step} {name} |{bar}| {percentage}% | trips {trips} | t {time}s | acc {acc}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let active = false;
  const name = (info: RunInfo): string =>
    info.phase === 'tune'
      ? `tune ${info.label} [${info.candidate ?? ''}]`
      : `${info.label} seed ${info.seed}`;
  const options: RunOptions = {
    log: (message) => {
      if (active) return; // the bar owns the line while a run is in progress
      process.stderr.write(`${message}\n`);
    },
    onRunStart: (info) => {
      bar.start(BAR_TOTAL, 0, {
        step: `[${info.step + 1}/${info.steps}]`,
        name: name(info),
        trips: 0,
        time: '0',
        acc: '—',
      });
      active = true;
    },
    onProgress: (_info, p, fraction) => {
      bar.update(Math.round(fraction * BAR_TOTAL), {
        trips: p.trips,
        time: p.time.toFixed(1),
        acc: p.accuracy === undefined ? '—' : p.accuracy.toFixed(3),
      });
    },
    onRunEnd: (_info, summary) => {
      bar.update(BAR_TOTAL, {
        trips: summary.counts.completed,
        time: summary.virtualSeconds.toFixed(1),
        acc: Number.isFinite(summary.finalAccuracy) ? summary.finalAccuracy.toFixed(3) : summary.stopReason,
      });
      bar.stop();
      active = false;
    },
  };
  return {
    options,
    stop: () => {
      if (active) bar.stop();
      active = false;
    },
  };
}

export async function simulateCommand(flags: SimulateFlags): Promise<void> {
  const config = resolveConfig(flags);
  const quiet = flags.quiet === true;
  const progress = progressReporter(quiet);
  let result: Awaited<ReturnType<typeof runExperiment>>;
  try {
    result = await runExperiment(config, progress.options);
  } finally {
    progress.stop();
  }
  const paths = await writeReport(result, flags.out);
  process.stdout.write(`\n${summaryText(result)}\n\n`);
  process.stdout.write(`wrote ${paths.results}\n      ${paths.curves}\n      ${paths.report}\n`);
}

export function registerSimulate(program: Command): void {
  program
    .command('simulate')
    .description('run a simulated experiment (a preset or a JSON config) and write a report')
    .option('-c, --config <file>', 'experiment config (JSON)')
    .option('-p, --preset <name>', 'built-in experiment (see `orchard presets`); default: default')
    .option('-o, --out <dir>', 'output directory', './orchard-out')
    .option('-s, --seed <n>', 'override the experiment seed', (v: string) => parseIntegerOption('--seed', v))
    .option('-q, --quiet', 'no progress bar')
    .action(async (flags: SimulateFlags) => {
      await simulateCommand(flags);
    });
}
