/**
 * `orchard privacy epsilon|noise`: plan a DP deployment of the Poisson-subsampled Gaussian
 * mechanism — the ε a noise multiplier buys, or the noise multiplier a target (ε, δ) needs.
 * Bad numbers are ConfigErrors (exit code 2, nothing computed).
 */
import type { Command } from 'commander';
import { ConfigError } from '../../core/errors.ts';
import {
  ACCOUNTANTS,
  type AccountantKind,
  epsilonFor,
  noiseMultiplierFor,
} from '../../privacy/dp/calibrate.ts';
import { issueCollector, parseIntegerOption, parseNumberOption } from '../options.ts';

function parseAccountant(value: string): AccountantKind {
  if (!ACCOUNTANTS.includes(value as AccountantKind))
    throw new ConfigError(
      [{ path: '--accountant', message: `expected one of ${ACCOUNTANTS.join(', ')}, got '${value}'` }],
      'arguments',
    );
  return value as AccountantKind;
}

interface RawFlags {
  readonly noiseMultiplier?: string;
  readonly epsilon?: string;
  readonly samplingRate: string;
  readonly steps: string;
  readonly delta: string;
  readonly accountant: string;
  readonly json?: boolean;
}

/** Parses every flag, collecting all problems into one ConfigError (flag names as paths). */
function parseFlags<K extends 'noiseMultiplier' | 'epsilon'>(
  raw: RawFlags,
  main: K,
  mainFlag: string,
): Record<K, number> & { samplingRate: number; steps: number; delta: number; accountant: AccountantKind } {
  const { issues, attempt } = issueCollector();
  const mainValue = attempt(() => parseNumberOption(mainFlag, raw[main] ?? ''));
  const samplingRate = attempt(() => parseNumberOption('--sampling-rate', raw.samplingRate));
  const steps = attempt(() => parseIntegerOption('--steps', raw.steps));
  const delta = attempt(() => parseNumberOption('--delta', raw.delta));
  const accountant = attempt(() => parseAccountant(raw.accountant));
  if (
    issues.length > 0 ||
    mainValue === undefined ||
    samplingRate === undefined ||
    steps === undefined ||
    delta === undefined ||
    accountant === undefined
  )
    throw new ConfigError(issues, 'arguments');
  return { [main]: mainValue, samplingRate, steps, delta, accountant } as Record<K, number> & {
    samplingRate: number;
    steps: number;
    delta: number;
    accountant: AccountantKind;
  };
}

function addCommonOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--sampling-rate <q>', 'probability that a client takes part in a step, in (0, 1]')
    .requiredOption('--steps <t>', 'number of server steps (positive integer)')
    .requiredOption('--delta <d>', 'target δ, in (0, 1); 1/N for N clients is common')
    .option(
      '--accountant <name>',
      `privacy accountant: ${ACCOUNTANTS.join(' | ')} (pld is tighter, slower)`,
      'rdp',
    )
    .option('--json', 'print JSON instead of a sentence');
}

const ACCOUNTANT_LABEL: Record<AccountantKind, string> = { rdp: 'RDP', pld: 'PLD' };

export function registerPrivacy(program: Command): void {
  const privacy = program
    .command('privacy')
    .description('plan differential privacy: the ε of a noise multiplier, or the noise a target ε needs');

  addCommonOptions(
    privacy
      .command('epsilon')
      .description('ε spent by the subsampled Gaussian mechanism over the given steps')
      .requiredOption('--noise-multiplier <s>', 'noise standard deviation / clipping norm (> 0)'),
  ).action((raw: RawFlags) => {
    const p = parseFlags(raw, 'noiseMultiplier', '--noise-multiplier');
    const epsilon = epsilonFor(p);
    if (raw.json === true) process.stdout.write(`${JSON.stringify({ epsilon })}\n`);
    else
      process.stdout.write(
        `ε = ${epsilon.toPrecision(6)} at δ = ${p.delta} after ${p.steps} steps ` +
          `(noise multiplier ${p.noiseMultiplier}, sampling rate ${p.samplingRate}, ${ACCOUNTANT_LABEL[p.accountant]} accountant)\n`,
      );
  });

  addCommonOptions(
    privacy
      .command('noise')
      .description('smallest noise multiplier meeting a target (ε, δ) over the given steps')
      .requiredOption('--epsilon <e>', 'target ε (> 0)'),
  ).action((raw: RawFlags) => {
    const p = parseFlags(raw, 'epsilon', '--epsilon');
    const noiseMultiplier = noiseMultiplierFor(p);
    if (raw.json === true) process.stdout.write(`${JSON.stringify({ noiseMultiplier })}\n`);
    else
      process.stdout.write(
        `noise multiplier ${noiseMultiplier.toPrecision(6)} gives ε ≤ ${p.epsilon} at δ = ${p.delta} over ${p.steps} steps ` +
          `(sampling rate ${p.samplingRate}, ${ACCOUNTANT_LABEL[p.accountant]} accountant)\n`,
      );
  });
}
