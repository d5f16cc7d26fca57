/**
 * `orchard guard eval --data file [--format generic|xstest|openai] [--model file.gguf | --endpoint URL
 * --backend openai|ollama] [--out dir] [--json]`: runs the guard over a labelled dataset and writes
 * results.json (metrics overall / per category / per language, the PR curve, every prediction) and
 * pr-curve.svg into --out; prints a summary table (or, with --json, the report without the
 * per-example predictions). Progress goes to stderr. Bad data or flags: exit 2 before any model load.
 */
import type { Command } from 'commander';
import { ConfigError, OrchardError } from '../../core/errors.ts';
import {
  EVAL_FORMATS,
  type EvalDataset,
  type EvalFormat,
  loadEvalDataset,
} from '../../guard/eval/datasets.ts';
import { runEval } from '../../guard/eval/evaluate.ts';
import { buildEvalReport, evalSummaryText, writeEvalOutputs } from '../../guard/eval/report.ts';
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

interface EvalFlags extends GuardBackendFlags, Pick<GuardPromptFlags, 'categories' | 'exclude' | 'variant'> {
  readonly data: string;
  readonly format?: string;
  readonly out: string;
  readonly json?: boolean;
  readonly concurrency?: number;
  readonly limit?: number;
}

function loadData(flags: EvalFlags): EvalDataset {
  if (flags.format !== undefined && !(EVAL_FORMATS as readonly string[]).includes(flags.format))
    throw new ConfigError(
      [{ path: '--format', message: `expected one of ${EVAL_FORMATS.join(', ')}, got '${flags.format}'` }],
      'arguments',
    );
  try {
    const ds = loadEvalDataset(flags.data, flags.format as EvalFormat | undefined);
    if (flags.limit === undefined) return ds;
    if (flags.limit < 1)
      throw new ConfigError([{ path: '--limit', message: 'must be at least 1' }], 'arguments');
    return { ...ds, examples: ds.examples.slice(0, flags.limit) };
  } catch (e) {
    // Bad data is the caller's input: exit 2 with the file and line, like other usage errors.
    if (e instanceof OrchardError && e.code === 'DATA_INVALID')
      throw new ConfigError([{ path: '--data', message: e.message }], 'data');
    throw e;
  }
}

/** Progress on stderr: a rewritten line on a terminal, otherwise a line per 10%. */
function progressReporter(io: GuardIo, isTty: boolean): (done: number, total: number) => void {
  let lastDecile = -1;
  const started = Date.now();
  return (done, total) => {
    const rate = done / Math.max((Date.now() - started) / 1000, 1e-3);
    const line = `guard eval: ${done}/${total} (${rate.toFixed(1)}/s)`;
    if (isTty) io.err(`\r${line}${done === total ? '\n' : ''}`);
    else {
      const decile = Math.floor((10 * done) / total);
      if (decile !== lastDecile) {
        lastDecile = decile;
        io.err(`${line}\n`);
      }
    }
  };
}

export function registerGuardEval(guard: Command, io: GuardIo, isTty = process.stderr.isTTY === true): void {
  addBackendOptions(
    addPolicyOptions(
      guard
        .command('eval')
        .description('evaluate the guard on labelled data: precision, recall, F1, FPR, AUPRC, PR curve')
        .requiredOption(
          '-d, --data <file>',
          'JSONL or CSV (optionally .gz): generic, XSTest or OpenAI moderation format',
        )
        .option('-f, --format <name>', `data format: ${EVAL_FORMATS.join(' | ')} (default: from the columns)`)
        .option('-o, --out <dir>', 'folder for results.json and pr-curve.svg', 'orchard-out/guard-eval')
        .option('--concurrency <n>', 'requests in flight (default 4)', (v: string) =>
          parseIntegerOption('--concurrency', v),
        )
        .option('--limit <n>', 'evaluate only the first n examples', (v: string) =>
          parseIntegerOption('--limit', v),
        ),
    ),
  )
    .option('--json', 'print the report (without per-example predictions) as JSON')
    .action(async (flags: EvalFlags) =>
      withGuardErrors(async () => {
        const promptOptions = await promptOptionsOf(flags);
        const dataset = loadData(flags);
        if (flags.concurrency !== undefined && flags.concurrency < 1)
          throw new ConfigError([{ path: '--concurrency', message: 'must be at least 1' }], 'arguments');
        await withGuard(flags, promptOptions, async (g) => {
          const model = g.backend.name;
          io.err(`guard eval: ${dataset.examples.length} examples (${dataset.format}) with ${model}\n`);
          const started = performance.now();
          const predictions = await runEval(g, dataset, {
            onProgress: progressReporter(io, isTty),
            ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
          });
          const report = buildEvalReport(dataset, predictions, {
            model,
            threshold: g.threshold,
            seconds: (performance.now() - started) / 1000,
          });
          const paths = await writeEvalOutputs(report, flags.out);
          if (flags.json) {
            const { predictions: _omitted, ...summary } = report;
            io.out(`${JSON.stringify({ ...summary, files: paths })}\n`);
          } else {
            io.out(evalSummaryText(report));
            io.out(`wrote ${paths.results}\nwrote ${paths.plot}\n`);
          }
        });
      }),
    );
}
