/**
 * Child process for the multi-writer test: appends keys `<prefix>0..<count-1>` and then
 * `shared0..<count-1>` (which the other writer appends too) to the storage URL, interleaving
 * awaited and unawaited calls, and prints one `R <key> <kind> <seq>` line per result.
 */
import { pathToFileURL } from 'node:url';
import { openStorage } from './index.ts';

async function main(): Promise<void> {
  const [url, prefix, countArg] = process.argv.slice(2);
  if (!url || !prefix || !countArg) throw new Error('usage: append-child <url> <prefix> <count>');
  const count = Number(countArg);
  const storage = await openStorage(url);
  const keys = Array.from({ length: count }, (_, i) => [`${prefix}${i}`, `shared${i}`]).flat();
  for (let i = 0; i < keys.length; i += 4) {
    const batch = keys.slice(i, i + 4);
    const results = await Promise.all(
      batch.map((key) =>
        storage.appendAccepted({
          taskId: 'multi',
          idempotencyKey: key,
          deviceId: prefix,
          assignmentId: key,
          baseVersion: 0,
          numExamples: 1,
          delta: new Float32Array([i]),
          response: { by: prefix },
          acceptedAt: Date.now(),
        }),
      ),
    );
    for (const [j, r] of results.entries()) process.stdout.write(`R ${batch[j]} ${r.kind} ${r.seq}\n`);
  }
  await storage.close();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
