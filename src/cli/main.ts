/**
 * The `orchard` command line. Each command lives in src/cli/commands/<name>.ts and registers itself
 * here. Exit codes: 0 success, 2 bad config or usage (nothing run, nothing written), 1 anything else.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../core/errors.ts';
import { registerFleet } from './commands/fleet.ts';
import { registerGuard } from './commands/guard.ts';
import { registerKrr } from './commands/krr.ts';
import { registerLogit } from './commands/logit.ts';
import { registerLottery } from './commands/lottery.ts';
import { registerPresets } from './commands/presets.ts';
import { registerPrivacy } from './commands/privacy.ts';
import { registerServe } from './commands/serve.ts';
import { registerSimulate } from './commands/simulate.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? '0.0.0';
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('orchard')
    .description('Federated and on-device learning: simulate FedBuff, FedAvg(M), FedAsync and compare them')
    .version(version(), '-v, --version')
    .showHelpAfterError()
    .exitOverride();
  registerSimulate(program);
  registerLogit(program);
  registerPresets(program);
  registerPrivacy(program);
  registerLottery(program);
  registerKrr(program);
  registerGuard(program);
  registerServe(program);
  registerFleet(program);
  return program;
}

/** Runs the CLI and returns the exit code (never calls process.exit itself). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; commander has already printed the message.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`orchard: ${e.message}\n`);
      return EXIT_USAGE;
    }
    const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`orchard: error: ${message}\n`);
    return EXIT_FAILURE;
  }
}

const isEntry = process.argv[1] !== undefined && /(orchard(\.js)?|main\.ts)$/.test(process.argv[1]);
if (isEntry) {
  process.exitCode = await main(process.argv.slice(2));
}
