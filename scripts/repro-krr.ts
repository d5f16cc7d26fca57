/**
 * Full online-KRR reproduction (issue 5 §2), same as `orchard krr repro` (it runs the same command code):
 *   node --import tsx scripts/repro-krr.ts [outDir] [--quick] [--windows=144,288,576] [--held-out]
 *     [--series=name,name]
 * Prints the table and writes krr-results.json + krr-report.html (a few minutes on 2 busy cores; the
 * window study defaults to 144 and 288; --held-out runs the main variants on the held-out series instead).
 */
import { krrReproCommand, parseWindowList } from '../src/cli/commands/krr.ts';

const args = process.argv.slice(2);
const windowsArg = args.find((a) => a.startsWith('--windows='));
const seriesArg = args.find((a) => a.startsWith('--series='));
await krrReproCommand({
  out: args.find((a) => !a.startsWith('--')) ?? './orchard-out/krr',
  quick: args.includes('--quick'),
  heldOut: args.includes('--held-out'),
  ...(seriesArg === undefined ? {} : { series: seriesArg.slice('--series='.length) }),
  ...(windowsArg === undefined ? {} : { windows: parseWindowList(windowsArg.slice('--windows='.length)) }),
});
