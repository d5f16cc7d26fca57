/**
 * Drives the server.ingest_100k load (bench/server.bench.ts: same task, same frames, same load
 * thread) against the server alone, for a CPU profile of its event loop:
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/ingest-prof --import tsx scripts/profile-ingest.ts [seconds] [connections]
 *
 * The main thread's profile is the file whose name has thread id 0 (CPU.<date>.<pid>.0.<n>.cpuprofile);
 * the others are the load and writer threads. Prints updates/s and the event loop's CPU ms per update.
 * Profiles are not committed.
 */
import { INGEST_CONNECTIONS, startRig } from '../bench/server.bench.ts';

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? INGEST_CONNECTIONS);
const rig = await startRig();
try {
  await rig.ask(rig.job('ingest', 1000, connections, 300));
  const result = await rig.ask(rig.job('ingest', seconds * 1000, connections, Math.ceil(seconds * 2000)));
  console.log(
    `${connections} connections, ${seconds} s: ${result.rate.toFixed(0)} updates/s, event loop ${result.loopMsPerRequest?.toFixed(3)} ms/update`,
  );
} finally {
  await rig.close();
}
