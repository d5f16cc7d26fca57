/**
 * Child process for the multi-writer test: appends keys `<prefix>0..<count-1>` and then
 * `shared0..<count-1>` (which the other writer appends too) to the storage URL, interleaving
 * awaited and unawaited calls, and prints one `R <key> <kind> <seq>` line per result.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
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

/** Runs this file as a writer process to completion and parses its result lines. */
function runWriter(url: string, prefix: string, count: number) {
  return new Promise<Array<{ key: string; kind: string; seq: number }>>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url), url, prefix, String(count)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`writer ${prefix} exited ${code}: ${err}`));
      resolve(
        out
          .trim()
          .split('\n')
          .map((l) => {
            const [, key = '', kind = '', seq = '0'] = l.split(' ');
            return { key, kind, seq: Number(seq) };
          }),
      );
    });
  });
}

/**
 * Two writer processes append 40 own keys each plus 40 shared keys to `url` at once, while this
 * process tails the journal by last seen seq. Checks: every key appended exactly once, seqs 1..120,
 * duplicates answered with the winner's seq, and the tail never sees a gap (entries become visible
 * in seq order).
 */
export async function checkTwoWriters(url: string): Promise<void> {
  const reader = await openStorage(url);
  try {
    let writersDone = false;
    let lastSeen = 0;
    let polls = 0;
    const gaps: string[] = [];
    const tail = (async () => {
      for (;;) {
        const finished = writersDone;
        const got = await reader.journalSince('multi', lastSeen);
        polls++;
        for (const e of got) {
          // Recorded, not thrown: the writers are still running.
          if (e.seq !== lastSeen + 1) gaps.push(`${lastSeen} → ${e.seq}`);
          lastSeen = e.seq;
        }
        if (finished) return;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const [a, b] = await Promise.all([runWriter(url, 'a', 40), runWriter(url, 'b', 40)]).finally(() => {
      writersDone = true;
    });
    await tail;
    assert.deepEqual(gaps, [], 'the tail saw a gap');
    assert.equal(lastSeen, 120);
    assert.ok(polls > 3, 'the tail ran while the writers wrote');
    const appended = [...a, ...b].filter((r) => r.kind === 'appended');
    assert.equal(appended.length, 120);
    assert.equal(new Set(appended.map((r) => r.key)).size, 120);
    assert.deepEqual(
      appended.map((r) => r.seq).sort((x, y) => x - y),
      Array.from({ length: 120 }, (_, i) => i + 1),
    );
    const seqOf = new Map(appended.map((r) => [r.key, r.seq]));
    for (const r of [...a, ...b].filter((x) => x.kind === 'duplicate')) assert.equal(r.seq, seqOf.get(r.key));
    const journal = await reader.journalSince('multi', 0);
    assert.equal(journal.length, 120);
    for (const e of journal) assert.equal(seqOf.get(e.idempotencyKey), e.seq);
  } finally {
    await reader.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
