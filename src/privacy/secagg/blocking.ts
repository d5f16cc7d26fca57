/**
 * A synchronous entry to secureBufferSum for synchronous drivers (the simulator's strategies are
 * synchronous state machines, while the crypto providers are asynchronous because WebCrypto is).
 *
 * The protocol runs unchanged (same SecAggClient/SecAggServer code, node:crypto provider) in one
 * worker thread; the caller blocks on Atomics.wait until the worker signals, then dequeues the result
 * with receiveMessageOnPort. Node only: browsers drive the asynchronous API directly.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { OrchardError } from '../../core/errors.ts';
import type { BufferContribution, SecureBufferOptions, SecureBufferResult } from './buffer.ts';
import { type SecAggFailure, secaggError } from './errors.ts';
import type { DropoutPlan } from './run.ts';

export type BlockingBufferOptions = Omit<SecureBufferOptions, 'crypto'>;

/** Generous: a group of 10 clients × 7,851 values takes well under a second. */
const WORKER_TIMEOUT_MS = 120_000;

let worker: Worker | undefined;

function sharedWorker(): Worker {
  if (worker === undefined) {
    // Workers do not inherit tsx's module hooks, so the worker registers them before importing the
    // TypeScript entry.
    const tsx = JSON.stringify(
      pathToFileURL(
        createRequire(import.meta.url)
          .resolve('tsx/package.json')
          .replace(/package\.json$/, 'dist/esm/api/index.mjs'),
      ).href,
    );
    const entry = JSON.stringify(new URL('./blocking-worker.ts', import.meta.url).href);
    worker = new Worker(`import(${tsx}).then((api) => { api.register(); return import(${entry}); });`, {
      eval: true,
    });
    // Never keep the process alive just for this worker.
    worker.unref();
  }
  return worker;
}

/** secureBufferSum with the node:crypto provider, blocking the calling thread until it finishes. */
export function secureBufferSumBlocking(
  contributions: readonly BufferContribution[],
  options: BlockingBufferOptions,
): SecureBufferResult {
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const plan = options.dropouts;
  const dropouts: { -readonly [K in keyof DropoutPlan]?: number[] } = {};
  if (plan !== undefined)
    for (const key of ['beforeAdvertise', 'beforeShareKeys', 'beforeMaskedInput', 'beforeUnmask'] as const) {
      const ids = plan[key];
      if (ids !== undefined) dropouts[key] = [...ids];
    }
  try {
    sharedWorker().postMessage({ signal, port: port2, contributions, options: { ...options, dropouts } }, [
      port2,
    ]);
    if (Atomics.wait(signal, 0, 0, WORKER_TIMEOUT_MS) === 'timed-out')
      throw new OrchardError(
        'INVALID_STATE',
        `secure aggregation worker gave no answer within ${WORKER_TIMEOUT_MS / 1000} s`,
      );
    const received = receiveMessageOnPort(port1);
    if (received === undefined)
      throw new OrchardError('INVALID_STATE', 'secure aggregation worker signalled without a result');
    const message = received.message as
      | { readonly result: SecureBufferResult }
      | { readonly error: { readonly reason?: SecAggFailure; readonly message: string } };
    if ('error' in message) {
      const { reason, message: text } = message.error;
      if (reason !== undefined) throw secaggError(reason, text.replace(/^secagg \w+: /, ''));
      throw new OrchardError('INVALID_STATE', `secure aggregation worker failed: ${text}`);
    }
    return message.result;
  } finally {
    port1.close();
  }
}
