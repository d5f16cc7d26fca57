/** `orchard lottery repro`: lottery tickets under distribution shift, written as JSON + HTML report. */
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { lotteryTableText, writeLotteryReport } from '../../stats/lottery/report.ts';
import {
  LOTTERY_TASKS,
  type LotteryResult,
  type LotteryTask,
  lotteryPreset,
  runLottery,
} from '../../stats/lottery/transfer.ts';
import { parseIntegerOption } from '../options.ts';

export interface LotteryReproFlags {
  readonly out: string;
  readonly quick?: boolean;
  readonly task: string;
  readonly seed?: number;
  readonly seeds?: number;
  readonly scope?: string;
  readonly rewind?: number;
  readonly quiet?: boolean;
}

export function parseTask(task: string): LotteryTask {
  if (!(LOTTERY_TASKS as readonly string[]).includes(task))
    throw new ConfigError(
      [{ path: '--task', message: `expected one of ${LOTTERY_TASKS.join(', ')}, got '${task}'` }],
      'arguments',
    );
  return task as LotteryTask;
}

export async function lotteryReproCommand(flags: LotteryReproFlags): Promise<void> {
  const task = parseTask(flags.task);
  if (flags.scope !== undefined && flags.scope !== 'global' && flags.scope !== 'layer')
    throw new ConfigError(
      [{ path: '--scope', message: `expected global or layer, got '${flags.scope}'` }],
      'arguments',
    );
  let config = lotteryPreset(task, flags.quick === true, flags.seed ?? 1);
  if (flags.scope !== undefined) config = { ...config, scope: flags.scope };
  if (flags.rewind !== undefined) {
    if (!(flags.rewind >= 0 && flags.rewind <= config.sourceTrain.steps))
      throw new ConfigError(
        [{ path: '--rewind', message: `must be within 0..${config.sourceTrain.steps}, got ${flags.rewind}` }],
        'arguments',
      );
    config = { ...config, rewindStep: flags.rewind };
  }
  const seeds = flags.seeds ?? 1;
  if (!(seeds >= 1 && seeds <= 20))
    throw new ConfigError([{ path: '--seeds', message: `must be within 1..20, got ${seeds}` }], 'arguments');
  const log = flags.quiet === true ? () => {} : (m: string) => process.stderr.write(`${m}\n`);
  const results: LotteryResult[] = [];
  for (let k = 0; k < seeds; k++) {
    const seed = config.seed + k;
    if (seeds > 1) log(`seed ${seed} (${k + 1}/${seeds})`);
    results.push(runLottery({ ...config, seed }, log));
  }
  const paths = await writeLotteryReport(results, flags.out);
  const first = results[0] as LotteryResult;
  const seconds = results.reduce((s, r) => s + r.seconds, 0);
  process.stdout.write(`\n${first.description}\n${first.modelName}\n\n${lotteryTableText(results)}\n\n`);
  process.stdout.write(
    `experiment time ${seconds.toFixed(1)} s\nwrote ${paths.results}\n      ${paths.report}\n`,
  );
}

export function registerLottery(program: Command): void {
  const lottery = program.command('lottery').description('lottery tickets under distribution shift');
  lottery
    .command('repro')
    .description('find IMP tickets on a source domain, retrain them on a shifted target, write a report')
    .option('-o, --out <dir>', 'output directory', './orchard-out/lottery')
    .option('--quick', 'small model and data (under a minute)')
    .option('-t, --task <task>', `one of ${LOTTERY_TASKS.join(', ')}`, 'mnist-rotate')
    .option('--scope <scope>', 'magnitude pruning over all layers (global) or within each layer (layer)')
    .option('--rewind <step>', 'rewind to the weights after this many dense steps (0 = init)', (v: string) =>
      parseIntegerOption('--rewind', v),
    )
    .option('-s, --seed <n>', 'seed (the first one with --seeds)', (v: string) =>
      parseIntegerOption('--seed', v),
    )
    .option('--seeds <n>', 'repeat with n consecutive seeds; tables and plots show mean ± sd', (v: string) =>
      parseIntegerOption('--seeds', v),
    )
    .option('-q, --quiet', 'no progress lines')
    .action(async (flags: LotteryReproFlags) => {
      await lotteryReproCommand(flags);
    });
}
