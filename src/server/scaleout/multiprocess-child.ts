/**
 * Child process for multiprocess.test.ts: one role of a scaled-out aggregation around a shared
 * storage file and one Redis.
 *
 *   aggregator <storage> <redis> <aggId> <mod> <rem> <batch>
 *     Reads the journal, takes the updates with seq % mod === rem, sums them in batches
 *     (Σ nᵢ·Δᵢ, weight Σ nᵢ) and pushes each batch to the exchange as one partial.
 *   leader <storage> <redis> <leaderId> <expectedPartials> <delayMs>
 *     Takes the task's lease, fences storage with its token, restores its folded sum and applied
 *     partial ids from the latest checkpoint, takes over partials a dead leader left unacknowledged, then folds partials one
 *     by one: checkpoint (sum + applied ids) first, acknowledge after. Prints `FOLDED <n>`.
 */
import { pathToFileURL } from 'node:url';
import { accumulate } from '../../fl/aggregate.ts';
import { openStorage } from '../storage/index.ts';
import { RedisLease } from './lease.ts';
import { type DeliveredPartial, PartialFolder, RedisPartialExchange } from './partials.ts';
import { connectRedis } from './redis.ts';

export const MP_TASK = 'mp-task';
export const MP_DIM = 64;
export const LEASE_TTL_MS = 800;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function aggregator(args: string[]): Promise<void> {
  const [storageUrl, redisUrl, aggId, mod, rem, batch] = args as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const storage = await openStorage(storageUrl);
  const redis = await connectRedis(redisUrl);
  const exchange = new RedisPartialExchange(redis);
  const mine = (await storage.journalSince(MP_TASK, 0)).filter((e) => e.seq % Number(mod) === Number(rem));
  for (let b = 0; b * Number(batch) < mine.length; b++) {
    const part = mine.slice(b * Number(batch), (b + 1) * Number(batch));
    const sum = new Float32Array(MP_DIM);
    let weight = 0;
    for (const e of part) {
      accumulate(sum, e.numExamples, e.delta);
      weight += e.numExamples;
    }
    await exchange.push({
      id: `${aggId}:${b}`,
      taskId: MP_TASK,
      aggregatorId: aggId,
      sum,
      weight,
      count: part.length,
      keys: part.map((e) => e.idempotencyKey),
      seqs: part.map((e) => e.seq),
    });
    process.stdout.write(`PUSHED ${aggId}:${b}\n`);
  }
  redis.disconnect();
  await storage.close();
}

interface LeaderState {
  weight: number;
  count: number;
  ids: string[];
}

async function leader(args: string[]): Promise<void> {
  const [storageUrl, redisUrl, leaderId, expected, delayMs] = args as [
    string,
    string,
    string,
    string,
    string,
  ];
  const storage = await openStorage(storageUrl);
  const redis = await connectRedis(redisUrl);
  const lease = new RedisLease(redis);
  const exchange = new RedisPartialExchange(redis);
  // Wait for the lease: a killed leader's lease runs out after its TTL.
  const deadline = Date.now() + 20_000;
  let grant = await lease.acquire(MP_TASK, leaderId, LEASE_TTL_MS);
  while (grant === null) {
    if (Date.now() > deadline) throw new Error('lease never became free');
    await sleep(50);
    grant = await lease.acquire(MP_TASK, leaderId, LEASE_TTL_MS);
  }
  const token = grant.fencingToken;
  // Fence before reading: from now on the previous leader's writes are refused by storage.
  await storage.fence(MP_TASK, token);
  const renew = setInterval(() => {
    lease.tryAcquire(MP_TASK, leaderId, LEASE_TTL_MS).then(
      (held) => {
        if (!held) process.exit(3); // someone else acts now: stop at once
      },
      () => process.exit(3),
    );
  }, LEASE_TTL_MS / 4);
  const cp = await storage.latestCheckpoint(MP_TASK);
  const saved: LeaderState = cp
    ? (JSON.parse(Buffer.from(cp.state).toString()) as LeaderState)
    : { weight: 0, count: 0, ids: [] };
  let version = cp?.version ?? 0;
  const folder = new PartialFolder(MP_DIM, saved.ids);
  if (cp) folder.sum.set(cp.params);
  folder.weight = saved.weight;
  folder.count = saved.count;
  process.stdout.write(`LEADING ${leaderId} token ${token} from version ${version}\n`);

  const apply = async (delivered: DeliveredPartial[]) => {
    for (const d of delivered) {
      if (folder.fold([d]).length > 0) {
        const state: LeaderState = {
          weight: folder.weight,
          count: folder.count,
          ids: [...folder.appliedIds],
        };
        await storage.saveCheckpoint({
          taskId: MP_TASK,
          version: ++version,
          params: folder.sum,
          state: Buffer.from(JSON.stringify(state)),
          journalSeq: 0,
          createdAt: Date.now(),
          fencingToken: token,
        });
        process.stdout.write(`FOLDED ${folder.appliedIds.size}\n`);
        await sleep(Number(delayMs));
      }
      await exchange.ack(MP_TASK, [d.deliveryId]);
    }
  };
  await apply(await exchange.takeOver(MP_TASK, leaderId));
  while (folder.appliedIds.size < Number(expected)) {
    if (Date.now() > deadline + 20_000) throw new Error('partials missing');
    await apply(await exchange.pull(MP_TASK, leaderId, 4, 200));
  }
  clearInterval(renew);
  await lease.release(MP_TASK, leaderId);
  process.stdout.write('DONE\n');
  redis.disconnect();
  await storage.close();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [mode, ...rest] = process.argv.slice(2);
  (mode === 'aggregator'
    ? aggregator(rest)
    : mode === 'leader'
      ? leader(rest)
      : Promise.reject(new Error(`mode ${mode}`))
  ).catch((err) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
