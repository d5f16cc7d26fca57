/**
 * `npm run bench`: runs every bench/*.bench.ts (or those whose names contain an argument), prints a
 * table and writes bench/results.json. Each file runs in its own child process so that one area's
 * memory (e.g. secure-aggregation setup) and JIT state cannot leak into another's figures, and so
 * that peak-RSS entries measure only their own work.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchEntry } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const RESULT_MARK = '@@bench-result ';

async function runChild(file: string): Promise<void> {
  const mod = (await import(join(here, file))) as { run: () => Promise<BenchEntry[]> };
  const entries = await mod.run();
  process.stdout.write(`${RESULT_MARK}${JSON.stringify(entries)}\n`);
}

function runInChild(file: string): BenchEntry[] {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', file],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith(RESULT_MARK));
  if (r.status !== 0 || line === undefined) {
    throw new Error(`${file} failed (exit ${r.status ?? r.signal}):\n${r.stdout}`);
  }
  return JSON.parse(line.slice(RESULT_MARK.length)) as BenchEntry[];
}

function main(filter: string[]): void {
  const files = readdirSync(here)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => filter.length === 0 || filter.some((w) => f.includes(w)))
    .sort();
  const results: BenchEntry[] = [];
  for (const f of files) {
    console.error(`running ${f} ...`);
    results.push(...runInChild(f));
  }
  const fmt = (v: number | null) => (v === null ? '-' : Number(v.toPrecision(4)).toString());
  console.log(
    `\n${'name'.padEnd(34)} ${'value'.padStart(12)} ${'unit'.padEnd(10)} ${'baseline'.padStart(12)} ${'ratio'.padStart(8)}  goal`,
  );
  for (const r of results) {
    console.log(
      `${r.name.padEnd(34)} ${fmt(r.value).padStart(12)} ${r.unit.padEnd(10)} ${fmt(r.baseline).padStart(12)} ${fmt(r.ratio).padStart(8)}  ${r.goal ?? ''}`,
    );
  }
  writeFileSync(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nwrote bench/results.json');
}

const args = process.argv.slice(2);
if (args[0] === '--child' && args[1] !== undefined) await runChild(args[1]);
else main(args);
