/**
 * Worker side of secureBufferSumBlocking (blocking.ts): runs the real, asynchronous protocol on
 * node:crypto and hands the result back through a message port, waking the blocked caller.
 */
import { type MessagePort, parentPort } from 'node:worker_threads';
import { type BufferContribution, type SecureBufferOptions, secureBufferSum } from './buffer.ts';
import { NodeCryptoProvider } from './crypto-node.ts';
import { SecAggError } from './errors.ts';
import type { DropoutPlan } from './run.ts';

export interface BlockingRequest {
  readonly signal: Int32Array;
  readonly port: MessagePort;
  readonly contributions: readonly BufferContribution[];
  readonly options: Omit<SecureBufferOptions, 'crypto' | 'dropouts'> & {
    readonly dropouts?: { readonly [K in keyof DropoutPlan]?: number[] };
  };
}

const crypto = new NodeCryptoProvider();

parentPort?.on('message', (request: BlockingRequest) => {
  const reply = (message: unknown): void => {
    request.port.postMessage(message);
    Atomics.store(request.signal, 0, 1);
    Atomics.notify(request.signal, 0);
  };
  secureBufferSum(request.contributions, { ...request.options, crypto }).then(
    (result) => reply({ result }),
    (error: unknown) =>
      reply({
        error:
          error instanceof SecAggError
            ? { reason: error.reason, message: error.message }
            : { message: error instanceof Error ? error.message : String(error) },
      }),
  );
});
