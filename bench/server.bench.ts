/**
 * Production server throughput, over HTTP on loopback.
 *
 * server.ingest_100k: accepted updates per second for 100,000-float updates (400 kB frames; the
 * devices checked in before the clock starts, check-ins are the second figure): auth,
 * frame decode, assignment check, finite + norm check, fold into FedBuff (K = 100, checkpoint every
 * 10 versions), durable journal append (group commit: the payloads written and fdatasync'd to a
 * segment file by the storage's writer thread, then the small rows committed to the SQLite WAL and
 * the WAL fdatasync'd), reply. Baseline: a bare node:http server that reads the same bytes and discards them. Ratio = our updates/s ÷ the
 * bare server's requests/s, measured interleaved in the same run (goal ≥ 0.5).
 *
 * server.checkin_per_s: check-ins per second answered by one selector process (auth, rate limit,
 * admission counter, signed assignment). Baseline: a bare node:http server answering a small JSON.
 *
 * The load comes from a worker thread (its own event loop) over keep-alive connections, so the
 * server's event loop does only server work.
 */
import { mkdtempSync, rmSync } from 'node:fs';
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

const NUM_PARAMS = 100_000;
const CONNECTIONS = 8;

interface LoadJob {
  readonly kind: 'ingest' | 'checkin' | 'bare-ingest' | 'bare-checkin';
  readonly url: string;
  readonly token: string;
  readonly taskId: string;
  readonly durationMs: number;
  /** Assignments to fetch before timing (ingest only). */
  readonly prefetch: number;
}

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

async function load(job: LoadJob): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
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
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        await one();
        done++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return done / seconds;
}

if (!isMainThread && parentPort !== null && workerData === null) {
  const port = parentPort;
  port.on('message', (job: LoadJob) => {
    load(job).then(
      (rate) => port.postMessage({ rate }),
      (error: unknown) => port.postMessage({ error: String((error as Error).stack ?? error) }),
    );
  });
}

// ---- main side ----

function bareServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no address');
      resolve({ server, url: `http://127.0.0.1:${address.port}` });
    });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

export async function run(): Promise<BenchEntry[]> {
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
  const ask = (job: LoadJob) =>
    new Promise<number>((resolve, reject) => {
      worker.once('message', (m: { rate?: number; error?: string }) =>
        m.error === undefined ? resolve(m.rate as number) : reject(new Error(m.error)),
      );
      worker.postMessage(job);
    });
  try {
    const reg = await fetch(`${server.url}/v1/devices/register`, {
      method: 'POST',
      body: JSON.stringify({ enrollmentKey: server.enrollmentKey }),
      headers: { 'content-type': 'application/json' },
    });
    const { token } = (await reg.json()) as { token: string };
    const job = (kind: LoadJob['kind'], url: string, durationMs: number, prefetch = 0): LoadJob => ({
      kind,
      url,
      token,
      taskId: 'bench',
      durationMs,
      prefetch,
    });
    await ask(job('ingest', server.url, 500, 300));
    await ask(job('bare-ingest', bare.url, 500));
    const ours: number[] = [];
    const base: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      ours.push(await ask(job('ingest', server.url, 2000, 1500)));
      base.push(await ask(job('bare-ingest', bare.url, 2000)));
    }
    const checkins: number[] = [];
    const bareCheckins: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      checkins.push(await ask(job('checkin', server.url, 1500)));
      bareCheckins.push(await ask(job('bare-checkin', bare.url, 1500)));
    }
    const ingest = median(ours);
    const ingestBase = median(base);
    const checkin = median(checkins);
    const checkinBase = median(bareCheckins);
    return [
      {
        name: 'server.ingest_100k',
        value: ingest,
        unit: 'updates/s',
        baseline: ingestBase,
        ratio: ingest / ingestBase,
        goal: 'ratio ≥ 0.5 vs a bare node:http server discarding the same bytes',
        note: `${CONNECTIONS} keep-alive connections, 400 kB frames (assignments fetched before timing); durable journal (payload segment + SQLite WAL rows, both fdatasync'd before each reply, group commit), FedBuff K=100`,
      },
      {
        name: 'server.checkin_per_s',
        value: checkin,
        unit: 'check-ins/s',
        baseline: checkinBase,
        ratio: checkin / checkinBase,
        note: `one process, ${CONNECTIONS} keep-alive connections; baseline: bare node:http JSON reply`,
      },
    ];
  } finally {
    await worker.terminate();
    bare.server.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
