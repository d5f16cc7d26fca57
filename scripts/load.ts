/**
 * Load test (not part of `npm test`): a server process (the default MNIST FedBuff task, SQLite in
 * a temp folder) and, in this process, a fleet of simulated devices (default 10,000, every one
 * running its own check-in → train → upload loop) over loopback for a set time (default 10 min).
 * Reports accepted updates/s, p50/p99 latencies per request kind, and memory: the server's and the
 * fleet's RSS sampled over the run, and the server's live heap after a forced GC; trends are taken
 * after a warm-up of one assignment TTL (10 min; half the run if shorter), during which the replay
 * cache of answered uploads fills by design. Run 20 minutes or more to see the steady state.
 *
 *   npx tsx scripts/load.ts                                   # 10,000 devices, 10 minutes
 *   npx tsx scripts/load.ts --devices 10000 --minutes 2 --out load.json
 *
 * Flags: --devices N, --minutes M, --concurrency C (the task's target of devices training at once,
 * default 100 as in the default task), --wait-ms W (the pacing the server gives devices it turns
 * away, default 30 s), --ms-per-second S (real ms per simulated second of training, default 1000:
 * trips take the simulator's half-normal seconds in real time), --sample-seconds S, --out FILE,
 * --heap-seconds H (default 30: how often the server forces a full GC and reports its live heap;
 * each forced GC is a short pause that shows in the p99 latencies).
 * Devices are registered first (64 at a time) and the clock starts after that; memory samples
 * cover only the timed part.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type FleetSummary, runFleet } from '../src/client/fleet.ts';
import { defaultTask } from '../src/server/task.ts';

interface Args {
  devices: number;
  minutes: number;
  concurrency: number;
  waitMs: number;
  msPerSecond: number;
  sampleSeconds: number;
  heapSeconds: number;
  out: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = {
    devices: 10_000,
    minutes: 10,
    concurrency: 100,
    waitMs: 30_000,
    msPerSecond: 1000,
    sampleSeconds: 10,
    heapSeconds: 30,
    out: null,
  };
  const numeric = {
    devices: 1,
    minutes: 0,
    concurrency: 1,
    waitMs: 1,
    msPerSecond: 0,
    sampleSeconds: 1,
    heapSeconds: 1,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] as string;
    const value = argv[i + 1];
    const key = flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (key === 'out') args.out = value;
    else if (key in numeric) {
      const n = Number(value);
      const min = numeric[key as keyof typeof numeric];
      if (!(Number.isFinite(n) && n >= min))
        throw new Error(`${flag} must be a number ≥ ${min}, got ${value}`);
      (args as unknown as Record<string, number>)[key] = n;
    } else throw new Error(`unknown flag ${flag}`);
  }
  if (!(args.minutes > 0)) throw new Error('--minutes must be > 0');
  return args;
}

const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** Starts the server in its own process, so its RSS is measured apart from the fleet's. */
async function startServerProcess(
  dataDir: string,
  args: Args,
): Promise<{ child: ChildProcess; url: string; enrollmentKey: string; heap: ServerHeap }> {
  const code = `
    const { startServer, defaultTask } = await import(${JSON.stringify(join(repoRoot, 'src/server/index.ts'))});
    const task = { ...defaultTask(), concurrency: ${args.concurrency}, waitMs: ${args.waitMs}, evalEvery: 20 };
    const s = await startServer({ dataDir: ${JSON.stringify(dataDir)}, task, log: (m) => process.stderr.write(m + '\\n') });
    process.stdout.write(JSON.stringify({ url: s.url, enrollmentKey: s.enrollmentKey }) + '\\n');
    // Live JS heap after a full collection: a leak in our code grows this; allocator or SQLite
    // page-cache growth shows in RSS only.
    const heapTimer = setInterval(() => {
      globalThis.gc();
      const m = process.memoryUsage();
      process.stdout.write(JSON.stringify({ heapMiB: m.heapUsed / 2 ** 20, externalMiB: m.external / 2 ** 20 }) + '\\n');
    }, ${args.heapSeconds * 1000});
    const stop = () => { clearInterval(heapTimer); return s.close().then(() => process.exit(0)); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  `;
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', code],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const heap: ServerHeap = { heapMiB: Number.NaN, externalMiB: Number.NaN };
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await new Promise<string>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start within 60 s')), 60_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      resolveLine(l);
      rl.on('line', (next) => Object.assign(heap, JSON.parse(next) as ServerHeap));
    });
    child.once('exit', (c) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${c} before starting`));
    });
  });
  const { url, enrollmentKey } = JSON.parse(line) as { url: string; enrollmentKey: string };
  return { child, url, enrollmentKey, heap };
}

/** The server's latest report of its live heap (after a forced full GC) and external memory. */
interface ServerHeap {
  heapMiB: number;
  externalMiB: number;
}

/** Resident set size of a process in MiB (Linux /proc); NaN elsewhere. */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

interface Sample {
  readonly t: number;
  readonly serverRssMiB: number;
  readonly serverHeapMiB: number;
  readonly fleetRssMiB: number;
  readonly fleetHeapMiB: number;
  readonly accepted: number;
  readonly updatesPerSecond: number;
}

/**
 * Memory trend after the warm-up: growth (%) from the first to the second half of the samples
 * taken after `warmupSeconds`, and the least-squares slope (MiB/min) over them. The warm-up covers
 * the replay cache of answered uploads, which by design fills for one assignment TTL (rate × TTL
 * entries) and then stays level.
 */
function trend(
  samples: readonly Sample[],
  key: 'serverRssMiB' | 'serverHeapMiB' | 'fleetRssMiB',
  warmupSeconds: number,
): { growthPct: number; slopeMiBPerMin: number } {
  const after = samples.filter((s) => s.t >= warmupSeconds && Number.isFinite(s[key]));
  const mid = after.length >> 1;
  const mean = (xs: readonly Sample[]) => xs.reduce((s, x) => s + x[key], 0) / Math.max(1, xs.length);
  const first = mean(after.slice(0, mid));
  const mt = after.reduce((s, x) => s + x.t, 0) / Math.max(1, after.length);
  const my = mean(after);
  let num = 0;
  let den = 0;
  for (const s of after) {
    num += (s.t - mt) * (s[key] - my);
    den += (s.t - mt) ** 2;
  }
  return {
    growthPct: first > 0 ? ((mean(after.slice(mid)) - first) / first) * 100 : Number.NaN,
    slopeMiBPerMin: den > 0 ? (num / den) * 60 : 0,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dataDir = mkdtempSync(join(tmpdir(), 'orchard-load-'));
  const { child, url, enrollmentKey, heap } = await startServerProcess(dataDir, args);
  const serverPid = child.pid as number;
  process.stderr.write(
    `load: ${args.devices} devices → ${url} for ${args.minutes} min (target concurrency ${args.concurrency}, wait ${args.waitMs} ms)\n`,
  );
  const samples: Sample[] = [];
  let registration = { devices: 0, seconds: 0 };
  let started = performance.now();
  let accepted = 0;
  let lastAccepted = 0;
  let lastT = 0;
  const sample = () => {
    const t = (performance.now() - started) / 1000;
    const mem = process.memoryUsage();
    const s: Sample = {
      t,
      serverRssMiB: rssMiB(serverPid),
      serverHeapMiB: heap.heapMiB,
      fleetRssMiB: mem.rss / 2 ** 20,
      fleetHeapMiB: mem.heapUsed / 2 ** 20,
      accepted,
      updatesPerSecond: t > lastT ? (accepted - lastAccepted) / (t - lastT) : 0,
    };
    samples.push(s);
    lastAccepted = accepted;
    lastT = t;
    process.stderr.write(
      `[${t.toFixed(0)}s] accepted ${accepted} (${s.updatesPerSecond.toFixed(0)}/s) server RSS ${s.serverRssMiB.toFixed(0)} MiB (heap after GC ${s.serverHeapMiB.toFixed(1)}), fleet RSS ${s.fleetRssMiB.toFixed(0)} MiB\n`,
    );
  };
  let sampler: NodeJS.Timeout | null = null;
  let summary: FleetSummary;
  try {
    summary = await runFleet({
      server: url,
      enrollmentKey,
      clients: args.devices,
      durationSeconds: args.minutes * 60,
      timing: { msPerSecond: args.msPerSecond },
      rampMs: 10_000,
      registerFirst: 64,
      onRegistered: (n, seconds) => {
        registration = { devices: n, seconds };
        started = performance.now();
        sampler = setInterval(sample, args.sampleSeconds * 1000);
        process.stderr.write(
          `registered ${n} devices in ${seconds.toFixed(1)} s (${(n / seconds).toFixed(0)}/s)\n`,
        );
      },
      progressEveryMs: 1000,
      onProgress: (p) => {
        accepted = p.accepted;
      },
    });
    accepted = summary.accepted;
    sample();
  } finally {
    if (sampler !== null) clearInterval(sampler);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    rmSync(dataDir, { recursive: true, force: true });
  }
  // Warm-up: one assignment TTL when the run is at least twice that long, else the first half.
  const ttlSeconds = defaultTask().assignmentTtlMs / 1000;
  const warmupSeconds = Math.min(ttlSeconds, (args.minutes * 60) / 2);
  const server = trend(samples, 'serverRssMiB', warmupSeconds);
  const serverHeap = trend(samples, 'serverHeapMiB', warmupSeconds);
  const fleet = trend(samples, 'fleetRssMiB', warmupSeconds);
  // "Flat": within ±5% between the two halves after the warm-up; only growth is a leak sign.
  const verdict = (g: number) => (g > 5 ? 'GROWING' : g < -5 ? 'shrinking' : 'flat');
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const lines = [
    `memory trends    after a ${(warmupSeconds / 60).toFixed(1)}-minute warm-up: second half vs first half, slope`,
    `devices           ${summary.clients}, ${summary.elapsedSeconds.toFixed(0)} s (after registering them in ${registration.seconds.toFixed(0)} s)`,
    `accepted          ${summary.accepted} (${summary.updatesPerSecond.toFixed(1)} updates/s), rejected ${summary.rejectedTotal} ${JSON.stringify(summary.rejected)}`,
    `waits / expired   ${summary.waits} / ${summary.expired}, errors ${JSON.stringify(summary.errors)}`,
    ...(['checkin', 'model', 'update', 'trip'] as const).map(
      (k) =>
        `${k.padEnd(8)} latency  p50 ${ms(summary.latency[k].p50)}  p99 ${ms(summary.latency[k].p99)}  (${summary.latency[k].count})`,
    ),
    `server RSS        ${samples[0]?.serverRssMiB.toFixed(0)} → ${samples.at(-1)?.serverRssMiB.toFixed(0)} MiB; ${server.growthPct.toFixed(1)}%, slope ${server.slopeMiBPerMin.toFixed(2)} MiB/min: ${verdict(server.growthPct)}`,
    `server heap (GC) ${samples.find((s) => Number.isFinite(s.serverHeapMiB))?.serverHeapMiB.toFixed(1)} → ${samples.at(-1)?.serverHeapMiB.toFixed(1)} MiB; ${serverHeap.growthPct.toFixed(1)}%, slope ${serverHeap.slopeMiBPerMin.toFixed(2)} MiB/min: ${verdict(serverHeap.growthPct)}`,
    `fleet RSS         ${samples[0]?.fleetRssMiB.toFixed(0)} → ${samples.at(-1)?.fleetRssMiB.toFixed(0)} MiB; ${fleet.growthPct.toFixed(1)}%, slope ${fleet.slopeMiBPerMin.toFixed(2)} MiB/min: ${verdict(fleet.growthPct)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (args.out !== null)
    writeFileSync(
      args.out,
      `${JSON.stringify({ args, registration, summary, memory: { warmupSeconds, server, serverHeap, fleet }, samples }, null, 2)}\n`,
    );
  // A run whose uploads failed measured nothing worth reporting: say so and exit non-zero.
  const errorCount = Object.values(summary.errors).reduce((a, b) => a + b, 0);
  if (summary.accepted === 0 || errorCount > 0) {
    process.stderr.write(`load run FAILED: ${summary.accepted} accepted, ${errorCount} request errors\n`);
    process.exitCode = 1;
  }
}

await main();
