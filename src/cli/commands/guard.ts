/**
 * `orchard guard`: Llama Guard 3 moderation from the command line.
 *   orchard guard check "text" [--response "..."] [--image file] [--conversation file.json]
 *                      [--model file.gguf | --endpoint URL --backend openai|ollama] [--json] ...
 *   orchard guard render "text" [...]       prints the exact prompt the model would get
 *
 * Subcommands register themselves through one function each (registerGuardCheck, …) so other
 * modules add theirs with one import and one call in registerGuard. The option helpers below
 * (prompt/backend flags → options, GuardError → exit code) are exported for them too.
 * Exit codes: 0 done (whatever the verdict), 2 bad input or usage, 1 runtime failure (backend
 * unreachable, bad model file, …).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import { createBackend } from '../../guard/backends/registry.ts';
import { readConversationFile } from '../../guard/conversation.ts';
import { type CheckInput, Guard, type PromptOptions, preparePrompt } from '../../guard/guard.ts';
import { parseCategories } from '../../guard/taxonomy.ts';
import {
  type Category,
  GUARD_INPUT_ERRORS,
  GUARD_VARIANTS,
  type GuardBackend,
  GuardError,
  type GuardModelVariant,
  type GuardResult,
  type ImageSource,
} from '../../guard/types.ts';
import { parsePositiveIntegerOption } from '../options.ts';
import { registerGuardEval } from './guard-eval.ts';
import { registerGuardServe } from './guard-serve.ts';

export interface GuardIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}
const STD_IO: GuardIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

export interface GuardPromptFlags {
  readonly response?: string;
  readonly image?: string;
  readonly conversation?: string;
  readonly categories?: string;
  readonly exclude?: string;
  readonly variant?: string;
  readonly maxImageBytes?: number;
  readonly allowSpecialTokens?: boolean;
}

export interface GuardBackendFlags {
  readonly model?: string;
  readonly endpoint?: string;
  readonly backend?: string;
  readonly modelName?: string;
  readonly apiKey?: string;
  readonly timeout?: number;
  readonly threads?: number;
  readonly threshold?: number;
}

function usage(path: string, message: string): ConfigError {
  return new ConfigError([{ path, message }], 'arguments');
}

function parseThreshold(value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw usage('--threshold', `expected a number in [0, 1], got '${value}'`);
  }
  return v;
}

/** Help text of `--max-image-bytes` (check, render, serve). */
export const MAX_IMAGE_BYTES_HELP = 'largest accepted image in bytes, a positive integer (default 10 MiB)';

/** Flags that set the policy and template: shared by every subcommand that renders prompts. */
export function addPolicyOptions(cmd: Command): Command {
  return cmd
    .option('--categories <file.json>', 'custom categories: [{code, name, description?}] or {"S1": "Name."}')
    .option('--exclude <codes>', 'comma-separated category codes to leave out, e.g. S6,S7')
    .option('--variant <v>', `template: ${GUARD_VARIANTS.join(', ')} (default 1b)`);
}

/** Flags that decide what prompt is rendered: shared by check, render and anything built on them. */
export function addPromptOptions(cmd: Command): Command {
  return addPolicyOptions(
    cmd
      .option('-r, --response <text>', 'an agent reply to judge (response classification)')
      .option('-i, --image <file>', 'one PNG/JPEG/WebP image (vision variant)')
      .option('-c, --conversation <file.json>', 'OpenAI-format chat messages (roles user/assistant)'),
  )
    .option('--max-image-bytes <n>', MAX_IMAGE_BYTES_HELP, (v: string) =>
      parsePositiveIntegerOption('--max-image-bytes', v),
    )
    .option(
      '--allow-special-tokens',
      'render control-token text such as <|eot_id|> verbatim instead of refusing it',
    );
}

/** Flags that pick and configure a backend. */
export function addBackendOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <file.gguf>', 'local GGUF model (node-llama-cpp, CPU)')
    .option('-e, --endpoint <url>', 'HTTP server: OpenAI-compatible (vLLM, …) or Ollama')
    .option('-b, --backend <kind>', 'with --endpoint: openai or ollama (default openai)')
    .option('--model-name <name>', 'served model name (e.g. meta-llama/Llama-Guard-3-1B, llama-guard3:1b)')
    .option('--api-key <key>', 'bearer token for the endpoint (default: $ORCHARD_GUARD_API_KEY)')
    .option('--timeout <ms>', 'per-request deadline in ms', (v: string) =>
      parsePositiveIntegerOption('--timeout', v),
    )
    .option('--threads <n>', 'CPU threads for --model', (v: string) =>
      parsePositiveIntegerOption('--threads', v),
    )
    .option('-t, --threshold <p>', 'decision threshold on P(unsafe) (default 0.5)', parseThreshold);
}

export function variantOf(flags: GuardPromptFlags): GuardModelVariant {
  const v = flags.variant ?? '1b';
  if (!(GUARD_VARIANTS as readonly string[]).includes(v)) {
    throw usage('--variant', `expected one of ${GUARD_VARIANTS.join(', ')}, got '${v}'`);
  }
  return v as GuardModelVariant;
}

export async function promptOptionsOf(flags: GuardPromptFlags): Promise<PromptOptions> {
  let categories: Category[] | undefined;
  if (flags.categories !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(flags.categories, 'utf8'));
    } catch (e) {
      throw usage('--categories', `cannot read ${flags.categories}: ${(e as Error).message}`);
    }
    categories = parseCategories(json);
  }
  const excluded = flags.exclude
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return {
    variant: variantOf(flags),
    ...(categories ? { categories } : {}),
    ...(excluded ? { excluded } : {}),
    ...(flags.maxImageBytes !== undefined ? { maxImageBytes: flags.maxImageBytes } : {}),
    ...(flags.allowSpecialTokens ? { specialTokens: 'allow' as const } : {}),
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The conversation the flags describe: the text argument or --conversation, plus --response/--image. */
export async function inputOf(
  text: string | undefined,
  flags: GuardPromptFlags,
): Promise<{ input: CheckInput; response?: string; image?: ImageSource }> {
  if ((text === undefined) === (flags.conversation === undefined)) {
    throw usage(
      '',
      'give the text to check (or - to read it from stdin) or --conversation <file.json>, not both',
    );
  }
  const input =
    flags.conversation !== undefined
      ? await readConversationFile(flags.conversation)
      : text === '-'
        ? await readStdin()
        : (text as string);
  return {
    input,
    ...(flags.response !== undefined ? { response: flags.response } : {}),
    ...(flags.image !== undefined ? { image: { path: flags.image } } : {}),
  };
}

export async function backendOf(flags: GuardBackendFlags, variant: GuardModelVariant): Promise<GuardBackend> {
  if ((flags.model === undefined) === (flags.endpoint === undefined)) {
    throw usage('', 'give exactly one of --model <file.gguf> or --endpoint <url>');
  }
  const common = {
    variant,
    ...(flags.timeout !== undefined ? { timeoutMs: flags.timeout } : {}),
  };
  if (flags.model !== undefined) {
    if (flags.backend !== undefined && flags.backend !== 'llama') {
      throw usage('--backend', '--model runs the local llama backend; --backend applies to --endpoint');
    }
    return createBackend('llama', {
      ...common,
      modelPath: flags.model,
      ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    });
  }
  const kind = flags.backend ?? 'openai';
  if (kind !== 'openai' && kind !== 'ollama')
    throw usage('--backend', `expected openai or ollama, got '${kind}'`);
  const apiKey = flags.apiKey ?? process.env.ORCHARD_GUARD_API_KEY;
  return createBackend(kind, {
    ...common,
    endpoint: flags.endpoint as string,
    ...(flags.modelName !== undefined ? { modelName: flags.modelName } : {}),
    ...(apiKey !== undefined && apiKey !== '' ? { apiKey } : {}),
  });
}

/**
 * Runs `run` with a Guard over the backend the flags pick (threshold and deadline from the flags too),
 * closing the backend afterwards whatever happens.
 */
export async function withGuard<T>(
  flags: GuardBackendFlags,
  promptOptions: PromptOptions,
  run: (guard: Guard) => Promise<T>,
): Promise<T> {
  const backend = await backendOf(flags, promptOptions.variant ?? '1b');
  try {
    const guard = new Guard({
      backend,
      ...promptOptions,
      ...(flags.threshold !== undefined ? { threshold: flags.threshold } : {}),
      ...(flags.timeout !== undefined ? { timeoutMs: flags.timeout } : {}),
    });
    return await run(guard);
  } finally {
    await backend.close();
  }
}

/**
 * Maps guard errors to the CLI's exit codes: input errors become ConfigErrors (exit 2, listed like
 * other usage errors); runtime ones become a one-line error (exit 1) without a JS stack trace.
 */
export function toCliError(e: unknown): unknown {
  if (!(e instanceof GuardError)) return e;
  if (GUARD_INPUT_ERRORS.has(e.code))
    return new ConfigError([{ path: e.code, message: e.message }], 'guard input');
  const err = new Error(`${e.code}: ${e.message}`);
  err.stack = err.message;
  return err;
}

export async function withGuardErrors(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (e) {
    throw toCliError(e);
  }
}

export function formatResult(r: GuardResult): string {
  const parts = [r.safe ? 'safe' : 'unsafe'];
  if (r.categories.length > 0) parts.push(r.categories.join(','));
  if (r.unknownCategories && r.unknownCategories.length > 0)
    parts.push(`unknown: ${r.unknownCategories.join(',')}`);
  parts.push(`score ${r.score.toFixed(4)}`);
  return parts.join('  ');
}

export function registerGuardCheck(guard: Command, io: GuardIo = STD_IO): void {
  addBackendOptions(
    addPromptOptions(
      guard
        .command('check')
        .description('judge a prompt (or, with --response, the reply to it) against the safety policy')
        .argument('[text]', 'the user prompt to check (- reads it from stdin)'),
    ),
  )
    .option('--json', 'print the result as JSON')
    .action(
      async (text: string | undefined, flags: GuardPromptFlags & GuardBackendFlags & { json?: boolean }) =>
        withGuardErrors(async () => {
          const promptOptions = await promptOptionsOf(flags);
          const { input, ...conv } = await inputOf(text, flags);
          // Validate the request before paying for a model load.
          await preparePrompt(input, { ...promptOptions, ...conv });
          await withGuard(flags, promptOptions, async (g) => {
            const r = await g.check(input, conv);
            io.out(flags.json ? `${JSON.stringify(r)}\n` : `${formatResult(r)}\n`);
          });
        }),
    );
}

export function registerGuardRender(guard: Command, io: GuardIo = STD_IO): void {
  addPromptOptions(
    guard
      .command('render')
      .description('print the exact prompt the model would be given (special tokens as text)')
      .argument('[text]', 'the user prompt (- reads it from stdin)'),
  )
    .option('--json', 'print {variant, classifiedRole, prefixLength, text} as JSON')
    .action(async (text: string | undefined, flags: GuardPromptFlags & { json?: boolean }) =>
      withGuardErrors(async () => {
        const { input, ...conv } = await inputOf(text, flags);
        const p = await preparePrompt(input, { ...(await promptOptionsOf(flags)), ...conv });
        if (flags.json) {
          const json = {
            variant: p.variant,
            classifiedRole: p.classifiedRole,
            prefixLength: p.prefix.length,
            text: p.text,
          };
          io.out(`${JSON.stringify(json)}\n`);
        } else {
          // Exactly the prompt: no trailing newline unless a person is reading it.
          io.out(process.stdout.isTTY ? `${p.text}\n` : p.text);
        }
      }),
    );
}

/** The `guard` command group. Add further subcommands here: one import, one call. */
export function registerGuard(program: Command, io: GuardIo = STD_IO): Command {
  const guard = program.command('guard').description('Llama Guard 3 safety moderation (check, render, …)');
  registerGuardCheck(guard, io);
  registerGuardRender(guard, io);
  registerGuardEval(guard, io);
  registerGuardServe(guard, io);
  return guard;
}
