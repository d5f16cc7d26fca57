/**
 * How fast could any server ingest the benchmark's uploads on this machine, given the work an
 * accepted update needs? Drives the server.ingest_100k load (bench/server.bench.ts: same frames,
 * same load thread, same connections) at a ladder of bare node:http servers that each do one more
 * step of that work, then at the real server, interleaved, and prints each rung's rate and its
 * ratio to the bare server measured in the same round:
 *
 *   bare     reads the bytes and discards them (the benchmark's baseline)
 *   copy     + reads the body into a pooled shared-memory block (src/server/bodies.ts)
 *   check    + decodes the frame, takes the squared norm (finite check) with the Wasm kernel and
 *              folds the delta into a FedBuff-sized accumulator (arena axpy), as the aggregator does
 *   durable  + appends it to the real SqliteStorage journal and replies once it is durable (segment
 *              written with O_DIRECT and fdatasync'd, row committed, WAL fdatasync'd)
 *   server   the real server (fastify routes, device token, signed assignment, idempotency,
 *              admission, the coordinator's fold and bookkeeping, the same journal)
 *
 * No rung authenticates, deduplicates or answers with a version; `durable` is therefore a floor
 * for a server that keeps accepted updates across a power loss, not a server.
 *
 *   npx tsx scripts/ingest-floor.ts [seconds per run] [rounds] [connections]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INGEST_CONNECTIONS, type LoadResult, startRig } from '../bench/server.bench.ts';
import { sumOfSquaresInMemory } from '../src/core/sumsq.ts';
import { defaultArena } from '../src/fl/wasm.ts';
import { BodyPool } from '../src/server/bodies.ts';
import { decodeFrame, FRAME_KIND_UPDATE } from '../src/server/protocol.ts';
import { SqliteStorage } from '../src/server/storage/sqlite.ts';

const [seconds = 5, rounds = 3, connections = INGEST_CONNECTIONS] = process.argv
  .slice(2)
  .map((a) => Number(a));
type Rung = 'copy' | 'check' | 'durable';
const RUNGS: readonly Rung[] = ['copy', 'check', 'durable'];

/** One rung's server: each request's body handled up to `rung`, then the bare server's reply. */
function rungServer(rung: Rung, storage: SqliteStorage): Server {
  const bodies = new BodyPool();
  const arena = defaultArena();
  const accumulator = arena.alloc(100_000);
  let keys = 0;
  const reply = (res: ServerResponse, status = 200) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 200 ? '{"ok":true}' : '{"ok":false}');
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const lent = bodies.lend(Number(req.headers['content-length']));
    if (lent === null) {
      req.resume();
      reply(res, 400);
      return;
    }
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      lent.write(chunk, received);
      received += chunk.length;
    });
    req.on('end', () => {
      if (rung === 'copy') {
        lent.release();
        reply(res);
        return;
      }
      const delta = decodeFrame(lent.bytes, FRAME_KIND_UPDATE, { copy: false }).floats;
      const squares = sumOfSquaresInMemory(arena.memory, delta);
      if (squares === null || !Number.isFinite(squares) || !arena.axpy(accumulator, 0.01, delta)) {
        lent.release();
        reply(res, 400);
        return;
      }
      if (rung === 'check') {
        lent.release();
        reply(res);
        return;
      }
      const response = { accepted: true, duplicate: false, staleness: 0, version: 1 };
      storage
        .appendAccepted({
          deltaStable: true,
          taskId: 'floor',
          idempotencyKey: `k${keys++}`,
          deviceId: 'device',
          assignmentId: 'assignment',
          baseVersion: 0,
          numExamples: 1,
          delta,
          response,
          acceptedAt: Date.now(),
        })
        .then(
          () => reply(res),
          () => reply(res, 503),
        )
        .finally(() => lent.release());
    });
  };
  return createServer(handle);
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no address');
      resolve(`http://127.0.0.1:${address.port}`);
    }),
  );
}

const median = (values: readonly number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

const dir = mkdtempSync(join(tmpdir(), 'orchard-floor-'));
const storage = new SqliteStorage({ path: join(dir, 'journal.sqlite') });
await storage.init();
const rig = await startRig();
const servers = RUNGS.map((rung) => rungServer(rung, storage));
try {
  const urls = await Promise.all(servers.map(listen));
  const ms = seconds * 1000;
  // Rungs use the bare load (one fixed frame, no check-in); the real server the benchmark's.
  const runs: Array<{ name: string; job: () => ReturnType<typeof rig.job> }> = [
    { name: 'bare', job: () => rig.job('bare-ingest', ms, connections) },
    ...RUNGS.map((name, i) => ({
      name,
      job: () => ({ ...rig.job('bare-ingest', ms, connections), url: urls[i] as string }),
    })),
    { name: 'server', job: () => rig.job('ingest', ms, connections, Math.ceil(seconds * 3000)) },
  ];
  for (const run of runs) await rig.ask({ ...run.job(), durationMs: 500, prefetch: 300 });
  const results = new Map<string, LoadResult[]>(runs.map((r) => [r.name, []]));
  const ratios = new Map<string, number[]>(runs.map((r) => [r.name, []]));
  for (let round = 0; round < rounds; round++) {
    let bare = 0;
    for (const run of runs) {
      const result = await rig.ask(run.job());
      if (run.name === 'bare') bare = result.rate;
      results.get(run.name)?.push(result);
      ratios.get(run.name)?.push(result.rate / bare);
      console.error(`  round ${round + 1} ${run.name}: ${result.rate.toFixed(0)}/s`);
    }
  }
  console.log(
    `${connections} connections, ${rounds} rounds of ${seconds} s; medians (ratio: to the bare run of the same round)`,
  );
  console.log('rung      per s   ratio (min–max)      CPU ms/request: event loop, whole process');
  for (const run of runs) {
    const r = results.get(run.name) ?? [];
    const q = ratios.get(run.name) ?? [];
    const loop = r.map((x) => x.loopMsPerRequest).filter((x): x is number => x !== null);
    console.log(
      `${run.name.padEnd(8)} ${median(r.map((x) => x.rate))
        .toFixed(0)
        .padStart(6)}   ${median(q).toFixed(2)} (${Math.min(...q).toFixed(2)}–${Math.max(...q).toFixed(2)})` +
        `     ${loop.length === 0 ? 'n/a' : median(loop).toFixed(3)}, ${median(r.map((x) => x.processMsPerRequest)).toFixed(3)}`,
    );
  }
} finally {
  for (const s of servers) s.close();
  await rig.close();
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
}
