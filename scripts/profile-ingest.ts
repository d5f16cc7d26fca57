/**
 * Drives the server.ingest_100k load (bench/server.bench.ts: same task, same frames, same load
 * thread) against the server alone, for a CPU profile of its event loop:
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/ingest-prof --import tsx scripts/profile-ingest.ts [seconds] [connections]
 *
 * The main thread's profile is the file whose name has thread id 0 (CPU.<date>.<pid>.0.<n>.cpuprofile);
 * the others are the load and writer threads. Prints updates/s, the event loop's and the whole
 * process's CPU ms per update, and each thread's (from /proc, timed window only).
 * Profiles are not committed.
 */
import { INGEST_CONNECTIONS, startRig } from '../bench/server.bench.ts';

const seconds = Number(process.argv[2] ?? 8);
const connections = Number(process.argv[3] ?? INGEST_CONNECTIONS);
const rig = await startRig();
try {
  await rig.ask(rig.job('ingest', 1000, connections, 300));
  const job = rig.job('ingest', seconds * 1000, connections, Math.ceil(seconds * 2000));
  const result = await rig.ask({ ...job, perThread: true });
  console.log(
    `${connections} connections, ${seconds} s: ${result.rate.toFixed(0)} updates/s, event loop ${result.loopMsPerRequest?.toFixed(3)} ms/update, whole process ${result.processMsPerRequest.toFixed(3)} ms/update`,
  );
  // Threads by CPU per update ('main' = the event loop, 'load' = the load generator; the busiest
  // other one is normally the segment writer).
  const threads = Object.entries(result.threads ?? {}).sort((a, b) => b[1] - a[1]);
  console.log(threads.map(([t, ms]) => `${t} ${ms.toFixed(3)}`).join(', '));
} finally {
  await rig.close();
}
