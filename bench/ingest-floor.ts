/**
 * Bare node:http servers that each do one more step of the work an accepted update needs (the
 * "floor" of server.ingest_100k): `copy` reads the body into a pooled shared-memory block
 * (src/server/bodies.ts); `check` also decodes the frame, takes the squared norm (finite check;
 * summed by the Wasm kernel chunk by chunk as the body arrives, as the aggregator does) and folds
 * the delta into a FedBuff-sized accumulator (arena axpy); `durable` also appends it to a real
 * SqliteStorage journal and replies once it is durable (segment written with O_DIRECT and
 * fdatasync'd, row committed, WAL fdatasync'd). None authenticates, deduplicates or answers with a
 * version: `durable` is a floor for a server that keeps accepted updates across a power loss, not a
 * server. `grouped` is the other durable design: after `check` it stores the folded accumulator, not
 * the update, once per group (the requests that arrived while the previous store was in flight), and
 * answers the group once that store is durable; one 400 kB record per group instead of one per
 * update, so its figure bounds what a server that checkpoints its FedBuff buffer at every group
 * commit could reach. Each replies as the bare server does. Used by server.bench.ts
 * (server.ingest_floor) and scripts/ingest-floor.ts (every rung).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sumOfSquaresInMemory } from '../src/core/sumsq.ts';
import { defaultArena } from '../src/fl/wasm.ts';
import { BodyPool, presummedSquares } from '../src/server/bodies.ts';
import { decodeFrame, FRAME_KIND_UPDATE } from '../src/server/protocol.ts';
import { SqliteStorage } from '../src/server/storage/sqlite.ts';

export type Rung = 'copy' | 'check' | 'durable' | 'grouped';
export const RUNGS: readonly Rung[] = ['copy', 'check', 'durable', 'grouped'];

/** One rung's server: each request's body handled up to `rung`, then the bare server's reply. */
export function rungServer(rung: Rung, storage: SqliteStorage): Server {
  const bodies = new BodyPool();
  const arena = defaultArena();
  const accumulator = arena.alloc(100_000);
  let keys = 0;
  const reply = (res: ServerResponse, status = 200) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 200 ? '{"ok":true}' : '{"ok":false}');
  };
  const append = (delta: Float32Array, numExamples: number) =>
    storage.appendAccepted({
      deltaStable: true,
      taskId: 'floor',
      idempotencyKey: `k${keys++}`,
      deviceId: 'device',
      assignmentId: 'assignment',
      baseVersion: 0,
      numExamples,
      delta,
      response: { accepted: true, duplicate: false, staleness: 0, version: 1 },
      acceptedAt: Date.now(),
    });
  // `grouped`: the requests folded since the last store started, answered once their store is durable.
  let waiting: ServerResponse[] = [];
  let storing = false;
  const storeGroup = () => {
    storing = true;
    const group = waiting;
    waiting = [];
    append(accumulator.slice(), group.length)
      .then(
        () => {
          for (const res of group) reply(res);
        },
        () => {
          for (const res of group) reply(res, 503);
        },
      )
      .finally(() => {
        storing = false;
        if (waiting.length > 0) storeGroup();
      });
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
      // Summed chunk by chunk as the body arrived, as the aggregator does.
      const squares = presummedSquares(lent.bytes, delta) ?? sumOfSquaresInMemory(arena.memory, delta);
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
      if (rung === 'grouped') {
        lent.release();
        waiting.push(res);
        if (!storing) storeGroup();
        return;
      }
      append(delta, 1)
        .then(
          () => reply(res),
          () => reply(res, 503),
        )
        .finally(() => lent.release());
    });
  };
  return createServer(handle);
}

/** Listens on a free loopback port; resolves to the server's base URL. */
export function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no address');
      resolve(`http://127.0.0.1:${address.port}`);
    }),
  );
}

/** Floor servers for `rungs`, listening on loopback, sharing one journal in a temporary folder;
 *  `urls` in the order of `rungs`; `close` stops them and removes the folder. */
export async function startFloor(
  rungs: readonly Rung[],
): Promise<{ readonly urls: string[]; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'orchard-floor-'));
  const storage = new SqliteStorage({ path: join(dir, 'journal.sqlite') });
  const servers = rungs.map((rung) => rungServer(rung, storage));
  const close = async () => {
    for (const server of servers) server.close();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await storage.init();
    return { urls: await Promise.all(servers.map(listen)), close };
  } catch (error) {
    await close();
    throw error;
  }
}
