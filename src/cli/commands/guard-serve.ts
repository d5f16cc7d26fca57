/**
 * `orchard guard serve [--port 8080] [--host 127.0.0.1] [--model file.gguf | --endpoint URL
 * --backend openai|ollama]`: serves `POST /v1/moderations` (OpenAI's moderations shape, see
 * src/guard/serve/moderations.ts) until SIGINT/SIGTERM, then closes the server and the backend.
 */
import type { Command } from 'commander';
import { startModerationServer } from '../../guard/serve/server.ts';
import { parseIntegerOption } from '../options.ts';
import {
  addBackendOptions,
  addPolicyOptions,
  type GuardBackendFlags,
  type GuardIo,
  type GuardPromptFlags,
  promptOptionsOf,
  withGuard,
  withGuardErrors,
} from './guard.ts';

interface ServeFlags
  extends GuardBackendFlags,
    Pick<GuardPromptFlags, 'categories' | 'exclude' | 'variant' | 'maxImageBytes'> {
  readonly port: number;
  readonly host: string;
  readonly name?: string;
}

/** Runs the server until `stop` fires (the CLI wires SIGINT/SIGTERM to it). */
export async function runGuardServe(flags: ServeFlags, io: GuardIo, stop: AbortSignal): Promise<void> {
  await withGuard(flags, await promptOptionsOf(flags), async (guard) => {
    const server = await startModerationServer({
      guard,
      host: flags.host,
      port: flags.port,
      ...(flags.name !== undefined ? { model: flags.name } : {}),
    });
    io.out(`guard serve: POST ${server.url}/v1/moderations (model ${flags.name ?? guard.backend.name})\n`);
    if (!stop.aborted)
      await new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }));
    await server.close();
    io.err('guard serve: stopped\n');
  });
}

export function registerGuardServe(guard: Command, io: GuardIo): void {
  addBackendOptions(
    addPolicyOptions(
      guard
        .command('serve')
        .description(
          'HTTP moderation endpoint in the shape of the OpenAI moderations API (POST /v1/moderations)',
        )
        .option(
          '-p, --port <n>',
          'port (0: any free port)',
          (v: string) => parseIntegerOption('--port', v),
          8080,
        )
        .option('--host <addr>', 'address to listen on', '127.0.0.1')
        .option('--name <model>', 'model name reported in responses (default: the backend name)'),
    ),
  ).action(async (flags: ServeFlags) =>
    withGuardErrors(async () => {
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await runGuardServe(flags, io, stop.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }),
  );
}
