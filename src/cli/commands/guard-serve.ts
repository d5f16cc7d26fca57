/**
 * `orchard guard serve [--port 8080] [--host 127.0.0.1] [--max-image-bytes N] [--model file.gguf |
 * --endpoint URL --backend openai|ollama]`: serves `POST /v1/moderations` (OpenAI's moderations
 * shape, see src/guard/serve/moderations.ts) until SIGINT/SIGTERM, then closes the server and the
 * backend. `--max-image-bytes` is the largest image a request may carry (default 10 MiB); a larger
 * one is answered 413 `image_too_large`. The body limit grows with it so that such an image, as a
 * base64 data URL, still fits in a body.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { DEFAULT_MAX_IMAGE_BYTES } from '../../guard/image.ts';
import { DEFAULT_MAX_BODY_BYTES, startModerationServer } from '../../guard/serve/server.ts';
import { parseIntegerOption, parsePositiveIntegerOption } from '../options.ts';
import {
  addBackendOptions,
  addPolicyOptions,
  type GuardBackendFlags,
  type GuardIo,
  type GuardPromptFlags,
  MAX_IMAGE_BYTES_HELP,
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

/**
 * The body limit for a given image limit: the default, or room for the image as a base64 data URL
 * (4 characters per 3 bytes) plus 1 MiB for the prefix, the text and the JSON around it.
 */
export function bodyLimitFor(maxImageBytes: number): number {
  return Math.max(DEFAULT_MAX_BODY_BYTES, 4 * Math.ceil(maxImageBytes / 3) + 1024 * 1024);
}

function parsePort(value: string): number {
  const n = parseIntegerOption('--port', value);
  if (n < 0 || n > 65535)
    throw new ConfigError([{ path: '--port', message: `expected 0–65535, got '${value}'` }], 'arguments');
  return n;
}

/** Runs the server until `stop` fires (the CLI wires SIGINT/SIGTERM to it). */
export async function runGuardServe(flags: ServeFlags, io: GuardIo, stop: AbortSignal): Promise<void> {
  await withGuard(flags, await promptOptionsOf(flags), async (guard) => {
    const server = await startModerationServer({
      guard,
      host: flags.host,
      port: flags.port,
      maxBodyBytes: bodyLimitFor(flags.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES),
      ...(flags.name !== undefined ? { model: flags.name } : {}),
    });
    io.out(`guard serve: POST ${server.url}/v1/moderations (model ${flags.name ?? guard.backend.name})\n`);
    if (!stop.aborted)
      await new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }));
    await server.close();
    io.err('guard serve: stopped\n');
  });
}

/** `stop` (tests): a signal that ends the server like SIGINT does. */
export function registerGuardServe(guard: Command, io: GuardIo, stop?: AbortSignal): void {
  addBackendOptions(
    addPolicyOptions(
      guard
        .command('serve')
        .description(
          'HTTP moderation endpoint in the shape of the OpenAI moderations API (POST /v1/moderations)',
        )
        .option('-p, --port <n>', 'port (0: any free port)', parsePort, 8080)
        .option('--host <addr>', 'address to listen on', '127.0.0.1')
        .option('--name <model>', 'model name reported in responses (default: the backend name)')
        .option(
          '--max-image-bytes <n>',
          `${MAX_IMAGE_BYTES_HELP}; larger images get 413 image_too_large`,
          (v: string) => parsePositiveIntegerOption('--max-image-bytes', v),
        ),
    ),
  ).action(async (flags: ServeFlags) =>
    withGuardErrors(async () => {
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      stop?.addEventListener('abort', onSignal, { once: true });
      if (stop?.aborted) onSignal();
      try {
        await runGuardServe(flags, io, controller.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        stop?.removeEventListener('abort', onSignal);
      }
    }),
  );
}
