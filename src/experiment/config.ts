/**
 * Experiment configuration: one dataset and model shared by several runs (one per aggregation
 * method), optional learning-rate tuning with an identical grid and budget for every method, and a
 * target accuracy for time-to-target comparisons. Everything is validated up front so a bad config
 * fails with every wrong field listed before any CPU time is spent.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, type Issue } from '../core/errors.ts';
import { type DatasetSpec, DatasetSpecSchema } from '../data/spec.ts';
import {
  type LocalTrainSpec,
  LocalTrainSpecSchema,
  type StrategySpec,
  StrategySpecSchema,
} from '../fl/spec.ts';
import { type ModelSpec, ModelSpecSchema } from '../nn/spec.ts';
import { type SimSpec, SimSpecSchema } from '../sim/spec.ts';

/**
 * An override schema: every field optional and WITHOUT its default, so a per-run override only
 * changes the fields it names (zod 4 would otherwise fill defaults into the override and silently
 * replace the shared values).
 */
function overrideOf<T>(schema: z.ZodObject): z.ZodType<Partial<T>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, field] of Object.entries(schema.shape)) {
    const inner = field instanceof z.ZodDefault ? (field.removeDefault() as z.ZodType) : (field as z.ZodType);
    shape[key] = inner.optional();
  }
  return z.strictObject(shape) as unknown as z.ZodType<Partial<T>>;
}

const LrListSchema = z.array(z.number().positive()).min(1);

/** Learning-rate candidates; the grid is their cartesian product. */
export const LrGridSchema = z.strictObject({
  /** Candidates for `local.lr`. Absent: the run's own client lr only. */
  clientLr: LrListSchema.optional(),
  /**
   * Candidates for the server step size: `serverOptimizer.lr` for sync and FedBuff, the mixing rate
   * `alpha` (≤ 1) for FedAsync. Absent: the run's own value only.
   */
  serverLr: LrListSchema.optional(),
});
export type LrGrid = z.infer<typeof LrGridSchema>;

export const TuningSpecSchema = z.strictObject({
  ...LrGridSchema.shape,
  /** Each candidate runs until this budget is spent (target stopping is off while tuning). */
  budget: z
    .strictObject({
      maxTrips: z.number().int().positive().optional(),
      maxTime: z.number().positive().optional(),
    })
    .refine((b) => b.maxTrips !== undefined || b.maxTime !== undefined, {
      message: 'set maxTrips or maxTime (or both)',
    }),
  /** What ranks candidates: accuracy at the end of the budget, or the best accuracy seen within it. */
  metric: z.enum(['final_accuracy', 'best_accuracy']).default('final_accuracy'),
});
export type TuningSpec = z.infer<typeof TuningSpecSchema>;

const LocalOverrideSchema = overrideOf<LocalTrainSpec>(LocalTrainSpecSchema);
const SimOverrideSchema = overrideOf<SimSpec>(SimSpecSchema);

export const RunSpecSchema = z.strictObject({
  label: z.string().min(1),
  strategy: StrategySpecSchema,
  /** Fields replacing the shared `local` for this run only. */
  local: LocalOverrideSchema.optional(),
  /** Fields replacing the shared `sim` for this run only. */
  sim: SimOverrideSchema.optional(),
  /** This run's own lr grid (replaces the shared one); `false` skips tuning for this run. */
  tuning: z.union([LrGridSchema, z.literal(false)]).optional(),
});
export type RunSpec = z.infer<typeof RunSpecSchema>;

const BaseConfigSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  /** Seeds the dataset, model initialization and simulator; repeat r uses seed + r. */
  seed: z.number().int().default(0),
  /** Repeats of every run with seeds seed, seed+1, … */
  seeds: z.number().int().positive().max(100).default(1),
  /** Accuracy for time/trips/bytes-to-target. Defaults to `sim.targetAccuracy` when that is set. */
  target: z.number().gt(0).max(1).optional(),
  /** Stop each run once the target is reached (saves time; curves end there). */
  stopAtTarget: z.boolean().default(true),
  dataset: DatasetSpecSchema,
  model: ModelSpecSchema,
  local: LocalTrainSpecSchema.prefault({}),
  sim: SimSpecSchema.prefault({}),
  runs: z.array(RunSpecSchema).min(1),
  tuning: TuningSpecSchema.optional(),
});

export type ExperimentConfig = z.infer<typeof BaseConfigSchema>;
export const ExperimentConfigSchema = BaseConfigSchema;

/** The effective settings of one run after applying its overrides. */
export interface ResolvedRun {
  readonly index: number;
  readonly label: string;
  readonly strategy: StrategySpec;
  readonly local: LocalTrainSpec;
  readonly sim: SimSpec;
  /** The lr grid this run is tuned over, or null when it is not tuned. */
  readonly grid: LrGrid | null;
}

export function resolveRun(config: ExperimentConfig, index: number): ResolvedRun {
  const run = config.runs[index];
  if (run === undefined) throw new ConfigError([{ path: `runs.${index}`, message: 'no such run' }]);
  const local: LocalTrainSpec = { ...config.local, ...run.local };
  const sim: SimSpec = { ...config.sim, ...run.sim };
  let grid: LrGrid | null = null;
  if (config.tuning !== undefined && run.tuning !== false) {
    const own = run.tuning;
    const clientLr = own?.clientLr ?? config.tuning.clientLr;
    const serverLr = own?.serverLr ?? config.tuning.serverLr;
    grid = {};
    if (clientLr !== undefined) grid.clientLr = clientLr;
    if (serverLr !== undefined) grid.serverLr = serverLr;
  }
  return { index, label: run.label, strategy: run.strategy, local, sim, grid };
}

/** The accuracy used for to-target comparisons, if any. */
export function targetOf(config: ExperimentConfig): number | undefined {
  return config.target ?? config.sim.targetAccuracy;
}

function inputKindOfDataset(d: DatasetSpec): 'dense' | 'bags' | undefined {
  if (d.kind === 'spam') return 'bags';
  if (d.kind === 'file') return undefined; // only known once the file is read
  return 'dense';
}

function inputKindOfModel(m: ModelSpec): 'dense' | 'bags' {
  return m.kind === 'embedding_bag' ? 'bags' : 'dense';
}

/** Checks that need several fields at once. */
function crossFieldIssues(config: ExperimentConfig): Issue[] {
  const issues: Issue[] = [];
  const dataKind = inputKindOfDataset(config.dataset);
  const modelKind = inputKindOfModel(config.model);
  if (dataKind !== undefined && dataKind !== modelKind) {
    issues.push({
      path: 'model.kind',
      message: `model '${config.model.kind}' takes ${modelKind} input but dataset '${config.dataset.kind}' provides ${dataKind} input`,
    });
  }
  if (config.model.kind === 'cnn' && config.dataset.kind === 'synthetic') {
    const { side, channels } = config.model;
    if (side * side * channels !== config.dataset.dim) {
      issues.push({
        path: 'model.side',
        message: `cnn expects ${side}x${side}x${channels} = ${side * side * channels} inputs but dataset.dim is ${config.dataset.dim}`,
      });
    }
  }
  const seen = new Map<string, number>();
  config.runs.forEach((run, i) => {
    const first = seen.get(run.label);
    if (first !== undefined) {
      issues.push({
        path: `runs.${i}.label`,
        message: `duplicate label '${run.label}' (also runs.${first})`,
      });
    } else seen.set(run.label, i);
    const r = resolveRun(config, i);
    if (r.sim.maxTime === undefined && r.sim.maxTrips === undefined && r.sim.maxVersions === undefined) {
      issues.push({
        path: run.sim === undefined ? 'sim' : `runs.${i}.sim`,
        message: `run '${run.label}' has no stop condition: set maxTime, maxTrips or maxVersions`,
      });
    }
    if (r.grid !== null && run.strategy.kind === 'fedasync') {
      const bad = (r.grid.serverLr ?? []).filter((lr) => lr > 1);
      if (bad.length > 0) {
        const path =
          typeof run.tuning === 'object' && run.tuning.serverLr !== undefined
            ? `runs.${i}.tuning.serverLr`
            : 'tuning.serverLr';
        issues.push({
          path,
          message: `FedAsync's server step is its mixing rate alpha, which must be ≤ 1 (got ${bad.join(', ')}); give run '${run.label}' its own tuning.serverLr`,
        });
      }
    }
  });
  return issues;
}

function joinPath(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join('.');
}

/** zod issues → Orchard issues with dotted paths, one per offending field. */
export function issuesFromZod(error: z.ZodError, prefix = ''): Issue[] {
  const out: Issue[] = [];
  const withPrefix = (p: string): string => (prefix === '' ? p : p === '' ? prefix : `${prefix}.${p}`);
  for (const issue of error.issues) {
    const base = joinPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ path: withPrefix(base === '' ? key : `${base}.${key}`), message: 'unknown field' });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) {
      message = `required field is missing (expected ${issue.expected})`;
    }
    out.push({ path: withPrefix(base), message });
  }
  return out;
}

/** Validates a raw (already JSON-parsed) config. Throws ConfigError listing every wrong field. */
export function parseExperimentConfig(raw: unknown): ExperimentConfig {
  const parsed = ExperimentConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(issuesFromZod(parsed.error), 'experiment config');
  const extra = crossFieldIssues(parsed.data);
  if (extra.length > 0) throw new ConfigError(extra, 'experiment config');
  return parsed.data;
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/**
 * Offset of the first JSON syntax error, found by a small recursive-descent scan. V8's JSON.parse
 * messages only sometimes carry a position, so this gives the user a line:column every time.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  class Stop extends Error {
    constructor(readonly at: number) {
      super('stop');
    }
  }
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const fail = (): never => {
    throw new Stop(i);
  };
  const literal = (word: string): void => {
    for (const ch of word) {
      if (text[i] !== ch) fail();
      i++;
    }
  };
  const str = (): void => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length) {
      const ch = text[i] as string;
      if (ch === '"') {
        i++;
        return;
      }
      if (ch.charCodeAt(0) < 0x20) fail();
      if (ch === '\\') {
        i++;
        const esc = text[i];
        if (esc === 'u') {
          for (let k = 1; k <= 4; k++) {
            if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) {
              i += k;
              fail();
            }
          }
          i += 5;
          continue;
        }
        if (esc === undefined || !'"\\/bfnrt'.includes(esc)) fail();
      }
      i++;
    }
    fail();
  };
  const num = (): void => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (m === null || m[0] === '' || m[0] === '-') fail();
    i += (m as RegExpExecArray)[0].length;
  };
  const value = (): void => {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail();
      }
    }
    if (ch === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail();
      }
    }
    if (ch === '"') str();
    else if (ch === 't') literal('true');
    else if (ch === 'f') literal('false');
    else if (ch === 'n') literal('null');
    else num();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
  } catch (e) {
    if (e instanceof Stop) return e.at;
    throw e;
  }
  return -1;
}

/** Parses config JSON text; syntax errors become a ConfigError naming the file, line and column. */
export function parseConfigText(text: string, source = 'config'): ExperimentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const offset = jsonErrorOffset(text);
    const at = offset >= 0 ? lineColumn(text, offset) : undefined;
    const where = at === undefined ? source : `${source}:${at.line}:${at.column}`;
    const detail = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new ConfigError([{ path: '', message: `${where}: JSON syntax error: ${detail}` }], 'config file');
  }
  return parseExperimentConfig(raw);
}

/** Reads and validates a config file. */
export function loadExperimentConfig(path: string): ExperimentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    throw new ConfigError([{ path: '', message: `cannot read ${path}: ${reason}` }], 'config file');
  }
  return parseConfigText(text, path);
}
