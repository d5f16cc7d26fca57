/**
 * Full lottery-ticket reproduction over several tasks (minutes per task on a 2-core machine):
 *   node --import tsx scripts/repro-lottery.ts [outDir] [task ...]
 * Each task writes <outDir>/<task>/lottery-results.json and lottery-report.html; the tables go to stdout.
 */
import { join } from 'node:path';
import { lotteryTableText, writeLotteryReport } from '../src/stats/lottery/report.ts';
import { LOTTERY_TASKS, type LotteryTask, lotteryPreset, runLottery } from '../src/stats/lottery/transfer.ts';

const [outDir = './orchard-out/lottery-repro', ...requested] = process.argv.slice(2);
const tasks = requested.length > 0 ? requested : [...LOTTERY_TASKS];
for (const task of tasks) {
  if (!(LOTTERY_TASKS as readonly string[]).includes(task)) {
    process.stderr.write(`unknown task ${task}; expected one of ${LOTTERY_TASKS.join(', ')}\n`);
    process.exit(2);
  }
}
for (const task of tasks as LotteryTask[]) {
  const result = runLottery(lotteryPreset(task, false), (m) => process.stderr.write(`[${task}] ${m}\n`));
  const paths = await writeLotteryReport(result, join(outDir, task));
  process.stdout.write(
    `\n## ${task}: ${result.description}\n${result.modelName}, ${result.seconds.toFixed(0)} s\n\n${lotteryTableText(result)}\n\nwrote ${paths.report}\n`,
  );
}
