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
 *   grouped  check, then instead of each update the folded accumulator, stored the same way once
 *              per group of requests (those that arrived while the previous store was in flight);
 *              the floor of a server that checkpoints its FedBuff buffer at every group commit
 *   server   the real server (fastify routes, device token, signed assignment, idempotency,
 *              admission, the coordinator's fold and bookkeeping, the same journal)
 *
 * No rung authenticates, deduplicates or answers with a version; `durable` and `grouped` are
 * therefore floors for a server that keeps accepted updates across a power loss, not servers.
 *
 *   npx tsx scripts/ingest-floor.ts [seconds per run] [rounds] [connections]
 */
import { RUNGS, startFloor } from '../bench/ingest-floor.ts';
import { INGEST_CONNECTIONS, type LoadResult, median, startRig } from '../bench/server.bench.ts';

const [seconds = 5, rounds = 3, connections = INGEST_CONNECTIONS] = process.argv
  .slice(2)
  .map((a) => Number(a));

const floor = await startFloor(RUNGS);
const rig = await startRig();
try {
  const { urls } = floor;
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
  await rig.close();
  await floor.close();
}
