/**
 * Drives the server.ingest_100k load (bench/server.bench.ts: same task, same frames, same load
 * thread) against the server alone, for a CPU profile of its event loop:
 *
 *   npx tsx scripts/profile-ingest.ts [seconds] [connections]
 *   npx tsx scripts/profile-ingest.ts [seconds] [connections] --shares[=N]
 *   npx tsx scripts/profile-ingest.ts [seconds] [connections] --bare
 *   npx tsx scripts/profile-ingest.ts [seconds] [connections] --rung=copy|check|durable
 *   node --cpu-prof --cpu-prof-dir=/tmp/ingest-prof --import tsx scripts/profile-ingest.ts [seconds] [connections]
 *
 * Prints updates/s, the event loop's and the whole process's CPU ms per update, and each thread's
 * (from /proc, timed window only). With --shares the script runs itself again under
 * `node --cpu-prof` and then prints the N (default 30) functions with the most self time on the
 * main thread, as shares of its busy (non-idle) samples over the timed window; a Wasm function is
 * named after the JS function that called it. Without it, the main thread's profile is the file
 * whose name has thread id 0 (CPU.<date>.<pid>.0.<n>.cpuprofile); the others are the load and
 * writer threads. Profiles are not committed. With --bare the same load goes to the benchmark's bare
 * node:http server (it reads the bytes and discards them), for the same per-thread figures; with
 * --rung to one of bench/ingest-floor.ts's floor servers (--shares works with both).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUNGS, type Rung, startFloor } from '../bench/ingest-floor.ts';
import { INGEST_CONNECTIONS, startRig } from '../bench/server.bench.ts';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const sharesFlag = process.argv.slice(2).find((a) => a.startsWith('--shares'));
const rungFlag = process.argv.slice(2).find((a) => a.startsWith('--rung='));
const rung = rungFlag === undefined ? null : (rungFlag.slice('--rung='.length) as Rung);
if (rung !== null && !RUNGS.includes(rung)) throw new Error(`--rung must be one of ${RUNGS.join(', ')}`);
const bare = process.argv.includes('--bare');
const seconds = Number(positional[0] ?? 8);
const connections = Number(positional[1] ?? INGEST_CONNECTIONS);
/** Set in the child that --shares starts: print where the timed window ended, on the profile's clock. */
const WINDOW_ENV = 'ORCHARD_PROFILE_WINDOW';
const WINDOW_LINE = 'timed window ends at (µs, monotonic): ';

if (sharesFlag !== undefined) {
  const top = Number(sharesFlag.split('=')[1] ?? 30);
  const dir = mkdtempSync(join(tmpdir(), 'ingest-prof-'));
  try {
    const child = spawnSync(
      process.execPath,
      [
        '--cpu-prof',
        `--cpu-prof-dir=${dir}`,
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        String(seconds),
        String(connections),
        ...(bare ? ['--bare'] : []),
        ...(rung === null ? [] : [`--rung=${rung}`]),
      ],
      { env: { ...process.env, [WINDOW_ENV]: '1' }, encoding: 'utf8', timeout: (seconds + 120) * 1000 },
    );
    process.stdout.write(child.stdout ?? '');
    process.stderr.write(child.stderr ?? '');
    const end = Number(
      child.stdout
        ?.split('\n')
        .find((l) => l.startsWith(WINDOW_LINE))
        ?.slice(WINDOW_LINE.length),
    );
    const main = readdirSync(dir).find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
    if (child.status !== 0 || !Number.isFinite(end) || main === undefined)
      throw new Error(`profiled run failed (exit ${child.status}, ${child.error?.message ?? 'no error'})`);
    printShares(
      JSON.parse(readFileSync(join(dir, main), 'utf8')) as CpuProfile,
      end - seconds * 1e6,
      end,
      top,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  const floor = rung === null ? null : await startFloor([rung]);
  const rig = await startRig();
  try {
    const floorUrl = floor?.urls[0] ?? null;
    const jobFor = (ms: number, prefetch: number) =>
      floorUrl !== null
        ? { ...rig.job('bare-ingest', ms, connections), url: floorUrl }
        : bare
          ? rig.job('bare-ingest', ms, connections)
          : rig.job('ingest', ms, connections, prefetch);
    await rig.ask(jobFor(1000, 300));
    const job = jobFor(seconds * 1000, Math.ceil(seconds * 2000));
    const result = await rig.ask({ ...job, perThread: true });
    if (process.env[WINDOW_ENV] === '1') console.log(`${WINDOW_LINE}${process.hrtime.bigint() / 1000n}`);
    console.log(
      `${rung !== null ? `floor rung ${rung}, ` : bare ? 'bare server, ' : ''}${connections} connections, ${seconds} s: ${result.rate.toFixed(0)} ${bare ? 'requests' : 'updates'}/s, event loop ${result.loopMsPerRequest?.toFixed(3)} ms/update, whole process ${result.processMsPerRequest.toFixed(3)} ms/update`,
    );
    // Threads by CPU per update ('main' = the event loop, 'load' = the load generator; the busiest
    // other one is normally the segment writer).
    const threads = Object.entries(result.threads ?? {}).sort((a, b) => b[1] - a[1]);
    console.log(threads.map(([t, ms]) => `${t} ${ms.toFixed(3)}`).join(', '));
  } finally {
    await rig.close();
    await floor?.close();
  }
}

interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly children?: readonly number[];
  }[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self-time shares of the busy samples taken in [from, to] (µs on the profile's clock). */
function printShares(profile: CpuProfile, from: number, to: number, top: number): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (id: number): string => {
    const { functionName, url, lineNumber } = (byId.get(id) as CpuProfile['nodes'][number]).callFrame;
    const where = url === '' ? '' : ` ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    if (!url.startsWith('wasm')) return `${functionName || '(anonymous)'}${where}`;
    // Name the JS function behind the JS-to-Wasm wrapper frames.
    let caller = parent.get(id);
    while (
      caller !== undefined &&
      /JSToWasm|js-to-wasm/i.test(byId.get(caller)?.callFrame.functionName ?? '')
    )
      caller = parent.get(caller);
    return `${functionName} (wasm, called by ${caller === undefined ? '?' : label(caller)})`;
  };
  const self = new Map<string, number>();
  let busy = 0;
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] as number;
    const fn = byId.get(id)?.callFrame.functionName;
    if (t < from || t > to || fn === '(idle)') return;
    busy++;
    const name = label(id);
    self.set(name, (self.get(name) ?? 0) + 1);
  });
  console.log(`main thread, timed window: ${busy} busy samples; self time, share of busy:`);
  for (const [name, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((100 * n) / Math.max(1, busy)).toFixed(1).padStart(5)}%  ${name}`);
}
