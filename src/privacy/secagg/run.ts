/**
 * Runs one aggregation in memory: n SecAggClient objects and one SecAggServer exchanging messages,
 * with clients dropping out before any round. The simulator and the tests drive the protocol through
 * this; a networked deployment drives the same objects from its transport instead.
 */

import { SecAggClient } from './client.ts';
import type { CryptoProvider } from './crypto.ts';
import type { SecAggParams, SecAggResult } from './messages.ts';
import { SecAggServer } from './server.ts';

/** Clients that go silent before each round (and stay silent afterwards). */
export interface DropoutPlan {
  readonly beforeAdvertise?: Iterable<number>;
  readonly beforeShareKeys?: Iterable<number>;
  readonly beforeMaskedInput?: Iterable<number>;
  readonly beforeUnmask?: Iterable<number>;
}

export async function runSecAgg(
  params: SecAggParams,
  inputs: readonly ArrayLike<number>[],
  crypto: CryptoProvider,
  dropouts: DropoutPlan = {},
): Promise<SecAggResult> {
  const n = params.graph.size;
  const clients = Array.from({ length: n }, (_, i) => new SecAggClient(i, params, crypto));
  const server = new SecAggServer(params, crypto);
  const gone = new Set<number>();
  const drop = (ids: Iterable<number> | undefined) => {
    for (const id of ids ?? []) gone.add(id);
  };
  const live = (id: number) => !gone.has(id);

  drop(dropouts.beforeAdvertise);
  for (const c of clients) if (live(c.id)) server.receiveAdvertise(await c.advertise());
  const broadcasts = server.closeAdvertise();

  drop(dropouts.beforeShareKeys);
  for (const b of broadcasts)
    if (live(b.to)) server.receiveShares(await (clients[b.to] as SecAggClient).shareKeys(b));
  const forwards = server.closeShares();

  drop(dropouts.beforeMaskedInput);
  for (const f of forwards) {
    if (!live(f.to)) continue;
    const input = inputs[f.to];
    if (input === undefined) throw new RangeError(`no input for client ${f.to}`);
    server.receiveMasked(await (clients[f.to] as SecAggClient).maskInput(f, input));
  }
  const requests = server.closeMasked();

  drop(dropouts.beforeUnmask);
  for (const r of requests)
    if (live(r.to)) server.receiveUnmask(await (clients[r.to] as SecAggClient).unmask(r));
  return server.finish();
}
