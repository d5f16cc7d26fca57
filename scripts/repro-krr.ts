/**
 * Full online-KRR reproduction (issue 5 §2), same as `orchard krr repro`:
 *   node --import tsx scripts/repro-krr.ts [outDir] [--quick] [--windows=144,288,576]
 * Prints the table and writes krr-results.json + krr-report.html (a few minutes on 2 busy cores; the
 * window study defaults to 144 and 288).
 */
import { parseWindowList } from '../src/cli/commands/krr.ts';
import { reproduceKrr, reproTable, writeKrrReport } from '../src/stats/online-krr/report.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const windowsArg = args.find((a) => a.startsWith('--windows='));
const windows = windowsArg === undefined ? undefined : parseWindowList(windowsArg.slice('--windows='.length));
const outDir = args.find((a) => !a.startsWith('--')) ?? './orchard-out/krr';
const result = reproduceKrr({
  quick,
  ...(windows === undefined ? {} : { windows }),
  onProgress: (m) => process.stderr.write(`krr repro: ${m}\n`),
});
const paths = await writeKrrReport(result, outDir);
process.stdout.write(`${reproTable(result)}\nwrote ${paths.results}\n      ${paths.report}\n`);
