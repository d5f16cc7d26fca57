/**
 * Full online-KRR reproduction (issue 5 §2), same as `orchard krr repro`:
 *   node --import tsx scripts/repro-krr.ts [outDir] [--quick]
 * Prints the table and writes krr-results.json + krr-report.html (a few minutes on 2 busy cores).
 */
import { reproduceKrr, reproTable, writeKrrReport } from '../src/stats/online-krr/report.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outDir = args.find((a) => !a.startsWith('--')) ?? './orchard-out/krr';
const result = reproduceKrr({ quick, onProgress: (m) => process.stderr.write(`krr repro: ${m}\n`) });
const paths = await writeKrrReport(result, outDir);
process.stdout.write(`${reproTable(result)}\nwrote ${paths.results}\n      ${paths.report}\n`);
