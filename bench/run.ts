/** `npm run bench`: runs every bench/*.bench.ts (or those named on the command line), prints a table
 * and writes bench/results.json. */
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchEntry } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => filter.length === 0 || filter.some((w) => f.includes(w)))
  .sort();

const results: BenchEntry[] = [];
for (const f of files) {
  console.error(`running ${f} ...`);
  const mod = (await import(join(here, f))) as { run: () => Promise<BenchEntry[]> };
  results.push(...(await mod.run()));
}

const fmt = (v: number | null) => (v === null ? '-' : Number(v.toPrecision(4)).toString());
console.log(
  `\n${'name'.padEnd(30)} ${'value'.padStart(12)} ${'unit'.padEnd(10)} ${'baseline'.padStart(12)} ${'ratio'.padStart(8)}  goal`,
);
for (const r of results) {
  console.log(
    `${r.name.padEnd(30)} ${fmt(r.value).padStart(12)} ${r.unit.padEnd(10)} ${fmt(r.baseline).padStart(12)} ${fmt(r.ratio).padStart(8)}  ${r.goal ?? ''}`,
  );
}
writeFileSync(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\nwrote bench/results.json');
