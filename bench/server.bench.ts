/**
 * Production server throughput, over HTTP on loopback.
 *
 * server.ingest_100k: accepted updates per second for 100,000-float updates (400 kB frames; the
 * devices checked in before the clock starts, check-ins are the second figure): auth,
 * frame decode, assignment check, finite + norm check, fold into FedBuff (K = 100, checkpoint every
 * 10 versions), folded group commit (the task's state with the FedBuff buffer, which includes every
 * update folded since the previous commit, written by the segment writer thread and fdatasync'd,
 * then a row pointing at it stored with those updates' idempotency keys in one SQLite transaction
 * and the WAL fdatasync'd; see Storage.commitFolded), reply. Baseline: a bare node:http server that reads the same bytes and
 * discards them. Ratio = our updates/s ÷ the bare server's requests/s, measured interleaved in the
 * same run, at the same number of uploads in flight (goal ≥ 0.5).
 *
 * In flight: INGEST_CONNECTIONS = 64 keep-alive connections, each with one upload in flight, for
 * both servers. A cross-device server has hundreds to thousands of uploads in flight (devices
 * upload whenever their local training ends), and every accepted update waits for its durable
 * commit (the commit in flight, then its own: each a transaction and a WAL fdatasync, ~10–20 ms per
 * request on the development disk), so with few in
 * flight the figure measures that latency, not the server: 8 connections cap it near
 * 8 / 20 ms = 400/s whatever the CPU does. 64 lifts that cap to ~3,200/s, four times what the server
 * reaches on the development box (so the figure is bound by the server's CPU), while one
 * load-generator thread still drives it and the bytes in flight stay modest (64 × 400 kB = 25 MB);
 * more connections would only add queueing in socket buffers. The 8-connection pair is kept as
 * server.ingest_100k_c8, in the same run, so the latency-bound figure stays visible. Measured on
 * the shared 2-core box (full run of 2026-11-29 18:23, README "Production server"; 19:35 gave
 * 1,540 vs 4,492, ratio 0.34, rounds 0.34–0.48; 20:52, on a quicker machine, 2,371 vs 7,039,
 * ratio 0.34, rounds 0.26–0.36): medians 1,694
 * updates/s vs 4,873 at 64 (ratio 0.35; rounds 0.35, 0.41 and 0.55, the last against a bare
 * server at half speed), 863 vs 4,232 at 8 (0.20), the grouped floor 2,201 (0.45; rounds
 * 0.42–0.67); goal not met. At 16:38, before the state went through the writer thread: 1,474 vs
 * 4,075 (0.36). Before folded commits (one 400 kB journal payload per update; full run of 14:16):
 * 1,182 vs 5,367 (0.22; rounds 0.19–0.30).
 *
 * Each ingest entry's note also gives CPU per request, ours and the bare server's, from /proc over
 * the timed window (read by the load thread): the event loop's (main-thread user + system time;
 * 0.47 ms vs 0.16 ms in that run) and the whole process's (every thread, the load generator's
 * included; 0.92 ms vs 0.38 ms). scripts/profile-ingest.ts gives it per thread.
 *
 * server.ingest_floor: the same load, at 64 in flight, interleaved, against bench/ingest-floor.ts's
 * `grouped` server: not a server but the least work a server that stores its state once per group
 * commit, as ours does, must do (body into a pooled block, decode, norm + finite check, fold, the
 * folded accumulator appended to the SQLite journal once per group of requests with its segment and
 * the WAL fdatasync'd; no auth, no dedup, no keys). Its ratio to the bare server bounds what
 * server.ingest_100k can reach on the machine with that design (0.54–0.72 in a
 * scripts/ingest-floor.ts run on the development box, README "Production server"); the note gives
 * ours ÷ floor. The ladder's `durable` rung, one journal payload per update (the design before
 * folded commits), measured 0.31–0.40.
 *
 * server.checkin_per_s: check-ins per second answered by one selector process (auth, rate limit,
 * admission counter, signed assignment). Baseline: a bare node:http server answering a small JSON.
 *
 * The load comes from a worker thread (its own event loop) over keep-alive connections, so the
 * server's event loop does only server work.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { startServer } from '../src/server/index.ts';
import {
  BINARY_CONTENT_TYPE,
  type CheckinResponse,
  encodeFrame,
  FRAME_KIND_UPDATE,
} from '../src/server/protocol.ts';
import type { BenchEntry } from './harness.ts';
import { listen, startFloor } from './ingest-floor.ts';

const NUM_PARAMS = 100_000;
/** Uploads in flight for the main ingest entry (see the header comment for why 64). */
export const INGEST_CONNECTIONS = 64;
/** The latency-bound pair (server.ingest_100k_c8) and the check-in entry. */
const FEW_CONNECTIONS = 8;

interface LoadJob {
  readonly kind: 'ingest' | 'checkin' | 'bare-ingest' | 'bare-checkin';
  readonly url: string;
  readonly token: string;
  readonly taskId: string;
  readonly durationMs: number;
  /** Assignments to fetch before timing (ingest only). */
  readonly prefetch: number;
  /** Keep-alive connections, one request in flight on each. */
  readonly connections: number;
  /** Also report CPU ms per request of every thread over the timed window (profiling). */
  readonly perThread?: boolean;
}

export interface LoadResult {
  /** Requests completed per second over the timed window. */
  readonly rate: number;
  /** Main-thread (server event loop) CPU ms per completed request over the timed window; null
   *  where /proc is not available. */
  readonly loopMsPerRequest: number | null;
  /** CPU ms per completed request of the whole process (every thread: server, its writer and
   *  fsync threads, GC helpers, and the load generator). */
  readonly processMsPerRequest: number;
  /** With `perThread`: CPU ms per request by thread id ('load' = the load generator's thread). */
  readonly threads?: Record<string, number>;
}

/** CPU ms (user + system) a thread of this process has used, from /proc; null without /proc. */
function threadCpuMs(tid: number | 'thread-self'): number | null {
  try {
    const path = tid === 'thread-self' ? '/proc/thread-self/stat' : `/proc/self/task/${tid}/stat`;
    const stat = readFileSync(path, 'utf8');
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15 (clock ticks).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}
const mainThreadCpuMs = () => threadCpuMs(process.pid);

/** CPU ms of every thread of this process by thread id (for scripts/profile-ingest.ts). */
export function allThreadsCpuMs(): Map<number, number> {
  const out = new Map<number, number>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const ms = threadCpuMs(Number(tid));
      if (ms !== null) out.set(Number(tid), ms);
    }
  } catch {
    // no /proc
  }
  return out;
}
/** A thread's id and name (libuv and V8 helpers have names; our workers name themselves). */
function threadLabel(tid: number): string {
  try {
    return `${tid} ${readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()}`;
  } catch {
    return String(tid);
  }
}
/** USER_HZ: 100 on every Linux architecture Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

// ---- worker side: the load generator ----

function post(
  agent: Agent,
  url: string,
  path: string,
  headers: Record<string, string>,
  ...chunks: Array<Uint8Array | string>
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
    for (const chunk of chunks.slice(0, -1)) req.write(chunk);
    req.end(chunks.at(-1));
  });
}

async function load(job: LoadJob): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.connections });
  const auth = { authorization: `Bearer ${job.token}` };
  const delta = new Float32Array(NUM_PARAMS);
  for (let i = 0; i < NUM_PARAMS; i++) delta[i] = Math.sin(i) * 1e-3;
  const checkin = async (): Promise<Extract<CheckinResponse, { action: 'train' }>> => {
    const r = await post(
      agent,
      job.url,
      '/v1/checkin',
      { ...auth, 'content-type': 'application/json' },
      '{}',
    );
    const body = JSON.parse(r.body) as CheckinResponse;
    if (r.status !== 200 || body.action !== 'train') throw new Error(`check-in: ${r.status} ${r.body}`);
    return body;
  };
  // An update frame = a small prefix (header JSON) + the 400 kB of floats, sent as two writes so
  // the client never copies the floats: both servers receive exactly the bytes of encodeFrame.
  const floatBytes = Buffer.from(delta.buffer);
  const prefixOf = (header: object) => {
    const frame = encodeFrame(FRAME_KIND_UPDATE, header, new Float32Array(0));
    return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength - 4);
  };
  const countField = (prefix: Buffer) => {
    const withCount = Buffer.alloc(prefix.length + 4);
    prefix.copy(withCount);
    withCount.writeUInt32LE(NUM_PARAMS, prefix.length);
    return withCount;
  };
  const upload = (path: string, headers: Record<string, string>, head: Buffer) =>
    post(
      agent,
      job.url,
      path,
      { ...headers, 'content-length': String(head.length + floatBytes.length) },
      head,
      floatBytes,
    );
  // Assignments are fetched before the clock starts: the figure is uploads/s (check-ins have their own).
  const assignments: Array<Extract<CheckinResponse, { action: 'train' }>> = [];
  if (job.kind === 'ingest') for (let i = 0; i < job.prefetch; i++) assignments.push(await checkin());
  const bareHead = countField(
    prefixOf({ taskId: job.taskId, assignmentId: 'x'.repeat(150), baseVersion: 0, numExamples: 1 }),
  );
  const one = async (): Promise<void> => {
    switch (job.kind) {
      case 'ingest': {
        const a = assignments.pop() ?? (await checkin());
        const head = countField(
          prefixOf({
            taskId: a.taskId,
            assignmentId: a.assignmentId,
            baseVersion: a.version,
            numExamples: 1,
          }),
        );
        const headers = { ...auth, 'content-type': BINARY_CONTENT_TYPE, 'idempotency-key': a.assignmentId };
        const r = await upload(`/v1/tasks/${a.taskId}/updates`, headers, head);
        if (r.status !== 200) throw new Error(`upload: ${r.status} ${r.body}`);
        return;
      }
      case 'bare-ingest': {
        const headers = { ...auth, 'content-type': BINARY_CONTENT_TYPE, 'idempotency-key': 'k' };
        await upload('/updates', headers, bareHead);
        return;
      }
      case 'checkin':
        await checkin();
        return;
      case 'bare-checkin':
        await post(agent, job.url, '/checkin', { ...auth, 'content-type': 'application/json' }, '{}');
        return;
    }
  };
  let done = 0;
  const until = performance.now() + job.durationMs;
  const t0 = performance.now();
  const cpu0 = mainThreadCpuMs();
  const process0 = process.cpuUsage();
  const threads0 = job.perThread === true ? allThreadsCpuMs() : null;
  const self0 = threadCpuMs('thread-self');
  await Promise.all(
    Array.from({ length: job.connections }, async () => {
      while (performance.now() < until) {
        await one();
        done++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = mainThreadCpuMs();
  const processCpu = process.cpuUsage(process0);
  let threads: Record<string, number> | undefined;
  if (threads0 !== null) {
    threads = {};
    const self1 = threadCpuMs('thread-self');
    for (const [tid, ms] of allThreadsCpuMs()) {
      const used = ms - (threads0.get(tid) ?? 0);
      if (used > 0) threads[tid === process.pid ? 'main' : threadLabel(tid)] = used / Math.max(1, done);
    }
    if (self0 !== null && self1 !== null) threads.load = (self1 - self0) / Math.max(1, done);
  }
  agent.destroy();
  return {
    rate: done / seconds,
    loopMsPerRequest: cpu0 === null || cpu1 === null || done === 0 ? null : (cpu1 - cpu0) / done,
    processMsPerRequest: (processCpu.user + processCpu.system) / 1000 / Math.max(1, done),
    ...(threads === undefined ? {} : { threads }),
  };
}

if (!isMainThread && parentPort !== null && workerData === null) {
  const port = parentPort;
  port.on('message', (job: LoadJob) => {
    load(job).then(
      (result) => port.postMessage({ result }),
      (error: unknown) => port.postMessage({ error: String((error as Error).stack ?? error) }),
    );
  });
}

// ---- main side ----

async function bareServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return { server, url: await listen(server) };
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** The server under test, the bare server and the load thread; `ask` runs one load job. */
export interface Rig {
  readonly server: { readonly url: string };
  readonly bareUrl: string;
  job(kind: LoadJob['kind'], durationMs: number, connections: number, prefetch?: number): LoadJob;
  ask(job: LoadJob): Promise<LoadResult>;
  close(): Promise<void>;
}

export async function startRig(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-bench-'));
  const server = await startServer({
    dataDir: dir,
    task: {
      taskId: 'bench',
      modelInput: { inputKind: 'dense', inputDim: 9999, numClasses: 10 }, // 99,990 + 10 = 100,000 params
      model: { kind: 'softmax' },
      strategy: { kind: 'fedbuff', bufferSize: 100, staleness: { kind: 'constant' } },
      concurrency: 1_000_000,
      evalEvery: 0,
      checkpointEvery: 10,
    },
  });
  const bare = await bareServer();
  // Workers do not inherit tsx's hooks: register them, then load this file as the worker.
  const tsx = pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/package.json')
      .replace(/package\.json$/, 'dist/esm/api/index.mjs'),
  ).href;
  const worker = new Worker(
    `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(import.meta.url)}); });`,
    { eval: true, workerData: null },
  );
  const close = async () => {
    await worker.terminate();
    bare.server.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const reg = await fetch(`${server.url}/v1/devices/register`, {
      method: 'POST',
      body: JSON.stringify({ enrollmentKey: server.enrollmentKey }),
      headers: { 'content-type': 'application/json' },
    });
    const { token } = (await reg.json()) as { token: string };
    return {
      server,
      bareUrl: bare.url,
      job: (kind, durationMs, connections, prefetch = 0) => ({
        kind,
        url: kind === 'bare-ingest' || kind === 'bare-checkin' ? bare.url : server.url,
        token,
        taskId: 'bench',
        durationMs,
        prefetch,
        connections,
      }),
      ask: (job) =>
        new Promise<LoadResult>((resolve, reject) => {
          worker.once('message', (m: { result?: LoadResult; error?: string }) =>
            m.error === undefined ? resolve(m.result as LoadResult) : reject(new Error(m.error)),
          );
          worker.postMessage(job);
        }),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

const fmtMs = (values: ReadonlyArray<number | null>): string => {
  const known = values.filter((v): v is number => v !== null);
  return known.length === 0 ? 'n/a' : median(known).toFixed(2);
};

export async function run(): Promise<BenchEntry[]> {
  // The `grouped` floor (bench/ingest-floor.ts): its own journal, beside the server's.
  const groupedFloor = await startFloor(['grouped']);
  const rig = await startRig();
  try {
    const floorUrl = groupedFloor.urls[0] as string;
    const floorJob = (durationMs: number) => ({
      ...rig.job('bare-ingest', durationMs, INGEST_CONNECTIONS),
      url: floorUrl,
    });
    // Assignments for a timed ingest run are fetched before its clock starts (enough for the
    // fastest rate seen here, with room); a run that uses them up checks in inside the window.
    const prefetchFor = (connections: number) => (connections >= 32 ? 4000 : 1500);
    const levels = [INGEST_CONNECTIONS, FEW_CONNECTIONS];
    for (const c of levels) {
      await rig.ask(rig.job('ingest', 500, c, 300));
      await rig.ask(rig.job('bare-ingest', 500, c));
    }
    await rig.ask(floorJob(500));
    const floor: LoadResult[] = [];
    const ours = new Map<number, LoadResult[]>(levels.map((c) => [c, []]));
    const base = new Map<number, LoadResult[]>(levels.map((c) => [c, []]));
    for (let rep = 0; rep < 3; rep++)
      for (const c of levels) {
        const o = await rig.ask(rig.job('ingest', 2000, c, prefetchFor(c)));
        const b = await rig.ask(rig.job('bare-ingest', 2000, c));
        ours.get(c)?.push(o);
        base.get(c)?.push(b);
        if (c === INGEST_CONNECTIONS) {
          const f = await rig.ask(floorJob(2000));
          floor.push(f);
          console.error(
            `  grouped floor c=${c}: ${f.rate.toFixed(0)}/s, ratio ${(f.rate / b.rate).toFixed(3)}`,
          );
        }
        console.error(
          `  ingest c=${c}: ${o.rate.toFixed(0)}/s (loop ${o.loopMsPerRequest?.toFixed(2)} ms, process ${o.processMsPerRequest.toFixed(2)} ms) vs bare ${b.rate.toFixed(0)}/s (loop ${b.loopMsPerRequest?.toFixed(2)} ms, process ${b.processMsPerRequest.toFixed(2)} ms), ratio ${(o.rate / b.rate).toFixed(3)}`,
        );
      }
    const checkins: number[] = [];
    const bareCheckins: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      checkins.push((await rig.ask(rig.job('checkin', 1500, FEW_CONNECTIONS))).rate);
      bareCheckins.push((await rig.ask(rig.job('bare-checkin', 1500, FEW_CONNECTIONS))).rate);
    }
    const ingestEntry = (name: string, c: number): BenchEntry => {
      const o = ours.get(c) ?? [];
      const b = base.get(c) ?? [];
      const value = median(o.map((r) => r.rate));
      const baseline = median(b.map((r) => r.rate));
      return {
        name,
        value,
        unit: 'updates/s',
        baseline,
        ratio: value / baseline,
        goal: 'ratio ≥ 0.5 vs a bare node:http server discarding the same bytes',
        note: `${c} keep-alive connections (one upload in flight on each, both servers), 400 kB frames (assignments fetched before timing); FedBuff K=100, durable by folded group commits (the state with the buffer written to a segment file by the writer thread, then its row + the group's keys in one SQLite transaction, WAL fdatasync'd before the replies); CPU per request (median of 3): event loop ours ${fmtMs(o.map((r) => r.loopMsPerRequest))} ms, bare ${fmtMs(b.map((r) => r.loopMsPerRequest))} ms; whole process incl. load generator ours ${fmtMs(o.map((r) => r.processMsPerRequest))} ms, bare ${fmtMs(b.map((r) => r.processMsPerRequest))} ms`,
      };
    };
    const checkin = median(checkins);
    const checkinBase = median(bareCheckins);
    const floorRate = median(floor.map((r) => r.rate));
    const bareRate = median(base.get(INGEST_CONNECTIONS)?.map((r) => r.rate) ?? []);
    return [
      ingestEntry('server.ingest_100k', INGEST_CONNECTIONS),
      {
        name: 'server.ingest_floor',
        value: floorRate,
        unit: 'updates/s',
        baseline: bareRate,
        ratio: floorRate / bareRate,
        note: `not a server: the least a server that stores its state once per group commit must do (bench/ingest-floor.ts 'grouped': body into a pooled block, frame decode, norm + finite check, FedBuff-sized fold, the accumulator appended to the SQLite journal once per group of requests with the segment and the WAL fdatasync'd; no auth, no dedup, no keys), same load, ${INGEST_CONNECTIONS} in flight, interleaved with server.ingest_100k; ours ÷ floor ${(median(ours.get(INGEST_CONNECTIONS)?.map((r) => r.rate) ?? []) / floorRate).toFixed(2)}; CPU per request (median of 3): event loop ${fmtMs(floor.map((r) => r.loopMsPerRequest))} ms, whole process ${fmtMs(floor.map((r) => r.processMsPerRequest))} ms`,
      },
      ingestEntry('server.ingest_100k_c8', FEW_CONNECTIONS),
      {
        name: 'server.checkin_per_s',
        value: checkin,
        unit: 'check-ins/s',
        baseline: checkinBase,
        ratio: checkin / checkinBase,
        note: `one process, ${FEW_CONNECTIONS} keep-alive connections; baseline: bare node:http JSON reply`,
      },
    ];
  } finally {
    await rig.close();
    await groupedFloor.close();
  }
}
