/**
 * Load test (not part of `npm test`): a server process (the default MNIST FedBuff task, SQLite in
 * a temp folder) and, in this process, a fleet of simulated devices (default 10,000, every one
 * running its own check-in → train → upload loop) over loopback for a set time (default 10 min).
 * Reports accepted updates/s, p50/p99 latencies per request kind, and memory: the server's and the
 * fleet's RSS sampled over the run, and the server's live heap after a forced GC. Trends are
 * least-squares slopes over the samples after a warm-up of one assignment TTL (10 min; half the run
 * if shorter), during which the replay cache of answered uploads fills by design, stated as the
 * growth over that span in % of the mean (flat within ±5%); the heap's verdict is on its growth net
 * of the replay cache, which follows the throughput (see `heapTrend`). Run 20 minutes or more to
 * see the steady state.
 *
 *   npx tsx scripts/load.ts                                   # 10,000 devices, 10 minutes
 *   npx tsx scripts/load.ts --devices 10000 --minutes 2 --out load.json
 *
 * Flags: --devices N, --minutes M, --concurrency C (the task's target of devices training at once,
 * default 100 as in the default task), --wait-ms W (the pacing the server gives devices it turns
 * away, default 30 s), --ms-per-second S (real ms per simulated second of training, default 1000:
 * trips take the simulator's half-normal seconds in real time), --sample-seconds S, --out FILE,
 * --heap-seconds H (default 30: how often the server forces a full GC and reports its live heap;
 * each forced GC is a short pause that shows in the p99 latencies), --snapshot-minutes 3,8,13
 * (the server writes a V8 heap snapshot at these minutes of the timed part, into --snapshot-dir,
 * default the OS temp folder; read them with scripts/heapsnapshot.ts; each one pauses the server
 * for seconds and raises its RSS for good, so the run's RSS trend is not meaningful then).
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
  snapshotMinutes: number[];
  snapshotDir: string;
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
    snapshotMinutes: [],
    snapshotDir: tmpdir(),
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
    else if (key === 'snapshotDir') args.snapshotDir = resolve(value);
    else if (key === 'snapshotMinutes') {
      args.snapshotMinutes = value.split(',').map(Number);
      if (!args.snapshotMinutes.every((m) => Number.isFinite(m) && m > 0))
        throw new Error(`${flag} must be minutes > 0 separated by commas, got ${value}`);
    } else if (key in numeric) {
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
    [
      '--expose-gc',
      '--heapsnapshot-signal=SIGUSR2',
      `--diagnostic-dir=${args.snapshotDir}`,
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      code,
    ],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const heap: ServerHeap = { heapMiB: Number.NaN, externalMiB: Number.NaN, reports: [] };
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await new Promise<string>((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start within 60 s')), 60_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      resolveLine(l);
      rl.on('line', (next) => {
        const report = JSON.parse(next) as { heapMiB: number; externalMiB: number };
        heap.heapMiB = report.heapMiB;
        heap.externalMiB = report.externalMiB;
        heap.reports.push({ at: performance.now(), heapMiB: report.heapMiB });
      });
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
  /** Every report, with the time it arrived (performance.now()). */
  readonly reports: Array<{ readonly at: number; readonly heapMiB: number }>;
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

/** A memory series: seconds since the clock started → MiB. */
type Series = ReadonlyArray<{ readonly t: number; readonly y: number }>;

/**
 * Least-squares coefficients of y on the columns of `xs` plus an intercept (centered normal
 * equations, Gaussian elimination with partial pivoting); null when the columns are (nearly)
 * collinear or constant.
 */
function leastSquares(xs: readonly (readonly number[])[], ys: readonly number[]): number[] | null {
  const k = xs.length;
  const n = ys.length;
  if (n <= k + 1) return null;
  const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const cx = xs.map((col) => {
    const m = mean(col);
    return col.map((v) => v - m);
  });
  const my = mean(ys);
  const a = cx.map((ci) => [...cx.map((cj) => ci.reduce((s, v, r) => s + v * (cj[r] as number), 0))]);
  const b = cx.map((ci) => ci.reduce((s, v, r) => s + v * ((ys[r] as number) - my), 0));
  const scale = Math.max(...a.map((row, i) => row[i] as number));
  for (let col = 0; col < k; col++) {
    let pivot = col;
    for (let r = col + 1; r < k; r++)
      if (Math.abs(a[r]?.[col] as number) > Math.abs(a[pivot]?.[col] as number)) pivot = r;
    [a[col], a[pivot]] = [a[pivot] as number[], a[col] as number[]];
    [b[col], b[pivot]] = [b[pivot] as number, b[col] as number];
    const p = (a[col] as number[])[col] as number;
    if (!(Math.abs(p) > 1e-9 * scale)) return null;
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = ((a[r] as number[])[col] as number) / p;
      for (let c = col; c < k; c++)
        (a[r] as number[])[c] = ((a[r] as number[])[c] as number) - f * ((a[col] as number[])[c] as number);
      b[r] = (b[r] as number) - f * (b[col] as number);
    }
  }
  return b.map((v, i) => v / ((a[i] as number[])[i] as number));
}

/**
 * Memory trend after the warm-up: the least-squares slope (MiB/min) over the samples taken after
 * `warmupSeconds`, and the growth it amounts to over that span as a percentage of their mean (a
 * fit over every sample, not two single readings, so one noisy sample cannot decide it).
 */
interface Trend {
  readonly meanMiB: number;
  readonly slopeMiBPerMin: number;
  readonly growthPct: number;
}

function trend(series: Series, warmupSeconds: number): Trend {
  const after = series.filter((s) => s.t >= warmupSeconds && Number.isFinite(s.y));
  const meanMiB = after.reduce((s, x) => s + x.y, 0) / Math.max(1, after.length);
  const fit = leastSquares(
    [after.map((s) => s.t)],
    after.map((s) => s.y),
  );
  const slopeMiBPerMin = fit === null ? Number.NaN : (fit[0] as number) * 60;
  const span = after.length > 0 ? (after.at(-1)?.t as number) - (after[0]?.t as number) : 0;
  return { meanMiB, slopeMiBPerMin, growthPct: ((slopeMiBPerMin * span) / 60 / meanMiB) * 100 };
}

/**
 * The server's heap after GC, net of the replay cache. The aggregator remembers every answered
 * upload until its assignment lapses (one TTL after the check-in, a trip later), so the cache
 * holds about the uploads accepted in the last TTL: it fills during the warm-up and afterwards
 * follows the throughput (a run slowed by other jobs holds fewer entries, a faster stretch more),
 * which a plain slope would read as growth or shrinkage. Fitted over every report after the
 * first `settleSeconds`: heap = a + b·(accepted in the preceding TTL) + c·t; c is the growth
 * nothing in the cache explains, b the bytes one remembered answer costs.
 */
interface HeapTrend extends Trend {
  readonly netSlopeMiBPerMin: number;
  readonly netGrowthPct: number;
  readonly bytesPerCachedAnswer: number;
}

function heapTrend(
  heap: Series,
  accepted: Series,
  ttlSeconds: number,
  settleSeconds: number,
  warmupSeconds: number,
): HeapTrend {
  const plain = trend(heap, warmupSeconds);
  // Accepted uploads up to time t, interpolated between progress samples (0 at the start).
  const acceptedAt = (t: number): number => {
    if (t <= 0) return 0;
    let prev = { t: 0, y: 0 };
    for (const s of accepted) {
      if (s.t >= t) return prev.y + ((s.y - prev.y) * (t - prev.t)) / Math.max(1e-9, s.t - prev.t);
      prev = s;
    }
    return prev.y;
  };
  const used = heap.filter((s) => s.t >= settleSeconds && Number.isFinite(s.y));
  const cached = used.map((s) => acceptedAt(s.t) - acceptedAt(s.t - ttlSeconds));
  const fit = leastSquares(
    [cached, used.map((s) => s.t)],
    used.map((s) => s.y),
  );
  const after = heap.filter((s) => s.t >= warmupSeconds);
  const span = after.length > 0 ? (after.at(-1)?.t as number) - (after[0]?.t as number) : 0;
  const netSlopeMiBPerMin = fit === null ? Number.NaN : (fit[1] as number) * 60;
  return {
    ...plain,
    netSlopeMiBPerMin,
    netGrowthPct: ((netSlopeMiBPerMin * span) / 60 / plain.meanMiB) * 100,
    bytesPerCachedAnswer: fit === null ? Number.NaN : (fit[0] as number) * 2 ** 20,
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
  const snapshotTimers: NodeJS.Timeout[] = [];
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
        for (const m of args.snapshotMinutes)
          snapshotTimers.push(
            setTimeout(() => {
              child.kill('SIGUSR2');
              process.stderr.write(
                `[${m} min] server heap snapshot requested (Heap.*.${serverPid}.*.heapsnapshot in ${args.snapshotDir})\n`,
              );
            }, m * 60_000),
          );
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
    for (const timer of snapshotTimers) clearTimeout(timer);
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
  const series = (key: 'serverRssMiB' | 'fleetRssMiB'): Series => samples.map((s) => ({ t: s.t, y: s[key] }));
  const server = trend(series('serverRssMiB'), warmupSeconds);
  const fleet = trend(series('fleetRssMiB'), warmupSeconds);
  // Heap reports carry their own arrival times (the 10 s samples repeat the latest one).
  const heapSeries: Series = heap.reports
    .map((r) => ({ t: (r.at - started) / 1000, y: r.heapMiB }))
    .filter((r) => r.t >= 0);
  const settleSeconds = Math.min(120, (args.minutes * 60) / 4);
  const serverHeap = heapTrend(
    heapSeries,
    samples.map((s) => ({ t: s.t, y: s.accepted })),
    ttlSeconds,
    settleSeconds,
    warmupSeconds,
  );
  // "Flat": the fitted growth over the span after the warm-up is within ±5% of the mean there;
  // only growth is a leak sign. The heap's verdict is on its growth net of the replay cache.
  const verdict = (g: number) => (g > 5 ? 'GROWING' : g < -5 ? 'shrinking' : 'flat');
  // While the replay cache fills (the first TTL), its size grows with time at a steady rate, so the
  // fit cannot tell it from a leak: the net figure needs a run with a good span past one TTL.
  const separable = summary.elapsedSeconds >= 1.5 * ttlSeconds;
  const heapVerdict = separable
    ? verdict(serverHeap.netGrowthPct)
    : `inconclusive (a ${(summary.elapsedSeconds / 60).toFixed(0)}-minute run; the replay cache fills for its ${ttlSeconds / 60}-minute TTL, which looks like growth until then: run 20 minutes or more)`;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const fmt = (t: Trend) =>
    `slope ${t.slopeMiBPerMin.toFixed(2)} MiB/min, ${t.growthPct.toFixed(1)}% of the mean ${t.meanMiB.toFixed(0)} MiB`;
  const lines = [
    `memory trends    least-squares slope after a ${(warmupSeconds / 60).toFixed(1)}-minute warm-up; growth = slope × the ${((summary.elapsedSeconds - warmupSeconds) / 60).toFixed(1)} minutes after it, as % of their mean`,
    `devices           ${summary.clients}, ${summary.elapsedSeconds.toFixed(0)} s (after registering them in ${registration.seconds.toFixed(0)} s)`,
    `accepted          ${summary.accepted} (${summary.updatesPerSecond.toFixed(1)} updates/s), rejected ${summary.rejectedTotal} ${JSON.stringify(summary.rejected)}`,
    `waits / expired   ${summary.waits} / ${summary.expired}, errors ${JSON.stringify(summary.errors)}`,
    ...(['checkin', 'model', 'update', 'trip'] as const).map(
      (k) =>
        `${k.padEnd(8)} latency  p50 ${ms(summary.latency[k].p50)}  p99 ${ms(summary.latency[k].p99)}  (${summary.latency[k].count})`,
    ),
    `server RSS        ${samples[0]?.serverRssMiB.toFixed(0)} → ${samples.at(-1)?.serverRssMiB.toFixed(0)} MiB; ${fmt(server)}: ${verdict(server.growthPct)}`,
    `server heap (GC) ${heapSeries[0]?.y.toFixed(1)} → ${heapSeries.at(-1)?.y.toFixed(1)} MiB; ${fmt(serverHeap)}; net of the replay cache (${serverHeap.bytesPerCachedAnswer.toFixed(0)} B per answer remembered) ${serverHeap.netSlopeMiBPerMin.toFixed(2)} MiB/min, ${serverHeap.netGrowthPct.toFixed(1)}%: ${heapVerdict}`,
    `fleet RSS         ${samples[0]?.fleetRssMiB.toFixed(0)} → ${samples.at(-1)?.fleetRssMiB.toFixed(0)} MiB; ${fmt(fleet)}: ${verdict(fleet.growthPct)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (args.out !== null)
    writeFileSync(
      args.out,
      `${JSON.stringify({ args, registration, summary, memory: { warmupSeconds, settleSeconds, server, serverHeap, fleet }, samples, heap: heapSeries }, null, 2)}\n`,
    );
  // A run whose uploads failed measured nothing worth reporting: say so and exit non-zero.
  const errorCount = Object.values(summary.errors).reduce((a, b) => a + b, 0);
  if (summary.accepted === 0 || errorCount > 0) {
    process.stderr.write(`load run FAILED: ${summary.accepted} accepted, ${errorCount} request errors\n`);
    process.exitCode = 1;
  }
}

await main();
