/**
 * `orchard fleet`: simulated devices over the real network against a running Orchard server. Each
 * device is a real SDK client with its own token, holding one client's share of the task's
 * federated dataset, training for as long as the simulator's timing model says and dropping out
 * with the simulator's dropout model. Progress goes to stderr once a second; the summary (accepted
 * and rejected updates, updates/s, p50/p99 latencies) to stdout. Ctrl-C stops it with a summary.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { type FleetOptions, type FleetSummary, runFleet } from '../../client/fleet.ts';
import { ConfigError } from '../../core/errors.ts';
import { issueCollector, parseIntegerOption, parseNumberOption } from '../options.ts';

export interface FleetFlags {
  readonly server: string;
  readonly clients: string;
  readonly enrollmentKey?: string;
  readonly dataDir: string;
  readonly duration?: string;
  readonly updates?: string;
  readonly concurrency?: string;
  readonly msPerSecond: string;
  readonly trainSigma: string;
  readonly speedSigma: string;
  readonly dropout: string;
  readonly seed: string;
  readonly json?: boolean;
  readonly quiet?: boolean;
}

/** The enrollment key: the flag, else $ORCHARD_ENROLLMENT_KEY, else a local server's secrets file. */
function enrollmentKeyOf(flags: FleetFlags): string | undefined {
  if (flags.enrollmentKey !== undefined) return flags.enrollmentKey;
  const env = process.env.ORCHARD_ENROLLMENT_KEY;
  if (env !== undefined && env !== '') return env;
  const secrets = join(flags.dataDir, 'secrets.json');
  if (!existsSync(secrets)) return undefined;
  try {
    const key = (JSON.parse(readFileSync(secrets, 'utf8')) as { enrollmentKey?: unknown }).enrollmentKey;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Parses every flag, collecting all problems into one ConfigError (exit code 2, nothing runs). */
export function fleetOptionsFrom(flags: FleetFlags): FleetOptions {
  const { issues, attempt } = issueCollector();
  const positiveInt = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = attempt(() => parseIntegerOption(flag, value));
    if (n !== undefined && n < 1) issues.push({ path: flag, message: `must be at least 1, got ${n}` });
    return n;
  };
  const number = (
    flag: string,
    value: string,
    ok: (x: number) => boolean,
    rule: string,
  ): number | undefined => {
    const x = attempt(() => parseNumberOption(flag, value));
    if (x !== undefined && !ok(x)) issues.push({ path: flag, message: `${rule}, got ${x}` });
    return x;
  };
  let server = flags.server;
  try {
    const url = new URL(server);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
    server = url.origin;
  } catch {
    issues.push({ path: '--server', message: `expected an http(s) URL, got '${flags.server}'` });
  }
  const clients = positiveInt('--clients', flags.clients);
  const concurrency = positiveInt('--concurrency', flags.concurrency);
  const updates = positiveInt('--updates', flags.updates);
  const duration =
    flags.duration === undefined
      ? undefined
      : number('--duration', flags.duration, (x) => x > 0, 'must be > 0');
  const msPerSecond = number('--ms-per-second', flags.msPerSecond, (x) => x >= 0, 'must be ≥ 0');
  const trainSigma = number('--train-sigma', flags.trainSigma, (x) => x > 0, 'must be > 0');
  const speedSigma = number('--speed-sigma', flags.speedSigma, (x) => x >= 0, 'must be ≥ 0');
  const dropout = number('--dropout', flags.dropout, (x) => x >= 0 && x <= 1, 'must be in [0, 1]');
  const seed = attempt(() => parseIntegerOption('--seed', flags.seed));
  const enrollmentKey = enrollmentKeyOf(flags);
  if (enrollmentKey === undefined)
    issues.push({
      path: '--enrollment-key',
      message: `required (or ORCHARD_ENROLLMENT_KEY, or ${join(flags.dataDir, 'secrets.json')} of a local server)`,
    });
  if (issues.length > 0) throw new ConfigError(issues, 'arguments');
  return {
    server,
    enrollmentKey: enrollmentKey as string,
    clients: clients as number,
    ...(concurrency !== undefined ? { concurrency } : {}),
    ...(updates !== undefined ? { updates } : {}),
    ...(duration !== undefined ? { durationSeconds: duration } : {}),
    timing: {
      duration: { kind: 'half_normal', sigma: trainSigma as number, offset: 0 },
      speedSigma: speedSigma as number,
      dropoutProbability: dropout as number,
      msPerSecond: msPerSecond as number,
    },
    seed: seed as number,
  };
}

const ms = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '-');

export function summaryLines(s: FleetSummary): string[] {
  const rejected = Object.entries(s.rejected)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const errors = Object.entries(s.errors)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `devices          ${s.clients} (${s.concurrency} at once), ${s.elapsedSeconds.toFixed(1)} s, stopped by ${s.stopReason}`,
    `accepted         ${s.accepted}${s.duplicates > 0 ? ` (${s.duplicates} replays of lost answers)` : ''}`,
    `rejected         ${s.rejectedTotal}${rejected === '' ? '' : ` (${rejected})`}`,
    `waits/expired    ${s.waits} / ${s.expired}`,
    `dropouts         ${s.dropouts}`,
    `errors           ${errors === '' ? 0 : errors}`,
    `updates/s        ${s.updatesPerSecond.toFixed(1)}`,
    `model version    ${s.lastVersion} (mean staleness ${s.meanStaleness.toFixed(2)})`,
    ...(['checkin', 'model', 'update', 'trip'] as const).map(
      (k) =>
        `${`${k} latency`.padEnd(17)}p50 ${ms(s.latency[k].p50)}, p99 ${ms(s.latency[k].p99)} (${s.latency[k].count})`,
    ),
  ];
}

export function registerFleet(program: Command): void {
  program
    .command('fleet')
    .description('simulated devices training against a running server over the network')
    .requiredOption('--server <url>', 'server origin, e.g. http://127.0.0.1:8080')
    .requiredOption('--clients <n>', 'devices in the fleet (device k holds client k of the task dataset)')
    .option(
      '--enrollment-key <key>',
      'enrollment key (default: $ORCHARD_ENROLLMENT_KEY or <data-dir>/secrets.json)',
    )
    .option(
      '--data-dir <dir>',
      'a local server data folder to read the enrollment key from',
      './orchard-data',
    )
    .option('--duration <s>', 'stop after this many seconds')
    .option('--updates <n>', 'stop after this many accepted updates')
    .option('--concurrency <n>', 'devices running trips at once (default: all)')
    .option('--ms-per-second <ms>', 'real milliseconds per simulated second of training', '100')
    .option(
      '--train-sigma <s>',
      'training time |N(0, s²)| simulated seconds per trip (the simulator default)',
      '1',
    )
    .option('--speed-sigma <s>', 'device speed heterogeneity exp(N(0, s²)), fixed per device', '0')
    .option('--dropout <p>', 'probability a device vanishes mid-trip', '0')
    .option('--seed <n>', 'seeds device choice, timing, dropouts and local training', '1')
    .option('--json', 'print the summary as JSON')
    .option('--quiet', 'no progress lines')
    .action(async (flags: FleetFlags) => {
      const options = fleetOptionsFrom(flags);
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once('SIGINT', onSigint);
      try {
        const summary = await runFleet({
          ...options,
          signal: stop.signal,
          onProgress: flags.quiet
            ? () => {}
            : (p) =>
                process.stderr.write(
                  `[${p.elapsedSeconds.toFixed(0)}s] accepted ${p.accepted} rejected ${p.rejected} ` +
                    `(${p.recentUpdatesPerSecond.toFixed(0)}/s) version ${p.version} busy ${p.busy} ` +
                    `waits ${p.waits} dropouts ${p.dropouts} errors ${p.errors}\n`,
                ),
        });
        process.stdout.write(
          flags.json ? `${JSON.stringify(summary, null, 2)}\n` : `${summaryLines(summary).join('\n')}\n`,
        );
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
