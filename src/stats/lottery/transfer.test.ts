import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../cli/main.ts';
import { ConfigError } from '../../core/errors.ts';
import { loadMnist } from '../../data/mnist.ts';
import type { DenseExamples } from '../../data/types.ts';
import { Mask } from './mask.ts';
import { lotteryTableText, summarizeLottery, writeLotteryReport } from './report.ts';
import { spamCollections } from './shift.ts';
import {
  buildDomains,
  checkLotteryConfig,
  INIT_STRATEGIES,
  type LotteryConfig,
  runLottery,
} from './transfer.ts';

const tiny: LotteryConfig = {
  task: 'mnist-invert',
  seed: 3,
  model: { kind: 'mlp', hidden: [8] },
  domains: { maxTrain: 200, maxTest: 100 },
  rounds: 2,
  pruneRate: 0.5,
  scope: 'layer',
  includeBiases: false,
  rewindStep: 3,
  sourceTrain: { steps: 20, batchSize: 32, lr: 0.05, momentum: 0.9 },
  targetTrain: { steps: 20, batchSize: 32, lr: 0.05, momentum: 0.9 },
  strategies: [...INIT_STRATEGIES],
};

function rowKey(x: Float32Array, i: number, dim: number, invert: boolean): string {
  const parts: number[] = [];
  for (let j = 0; j < dim; j++)
    parts.push(Math.round(1000 * (invert ? 1 - (x[i * dim + j] as number) : (x[i * dim + j] as number))));
  return parts.join(',');
}

test('MNIST domains are disjoint halves; the target is the transformed half', () => {
  const d = buildDomains('mnist-invert', { seed: 1, maxTrain: 300, maxTest: 50 });
  const src = d.source.train as DenseExamples;
  const tgt = d.target.train as DenseExamples;
  assert.equal(src.n, 300);
  assert.equal(d.target.test.n, 50);
  const mnist = loadMnist();
  const all = new Set<string>();
  for (let i = 0; i < mnist.n; i++) all.add(rowKey(mnist.x, i, mnist.dim, false));
  const source = new Set<string>();
  for (let i = 0; i < src.n; i++) source.add(rowKey(src.x, i, src.dim, false));
  for (let i = 0; i < tgt.n; i++) {
    const original = rowKey(tgt.x, i, tgt.dim, true);
    assert.ok(all.has(original), 'un-inverting a target image gives an MNIST image');
    assert.ok(!source.has(original), 'no target image comes from the source half');
  }
});

test('spam collections line up with loadSpam labels and the published corpus sizes', () => {
  const groups = spamCollections();
  const counts = new Map<string, number>();
  for (const g of groups) counts.set(g, (counts.get(g) ?? 0) + 1);
  // Sizes of the SpamAssassin public corpus folders as documented for the package.
  assert.deepEqual(Object.fromEntries(counts), {
    'easy-ham-1': 2500,
    'easy-ham-2': 1400,
    'hard-ham-1': 250,
    'spam-1': 500,
    'spam-2': 1396,
  });
  const d = buildDomains('spam', { seed: 1, spamBuckets: 256 });
  // The later collections (1400 + 1396 messages) split 80/20.
  assert.equal(d.target.train.n + d.target.test.n, 2796);
  assert.equal(d.source.train.n + d.source.test.n, 3250);
  let spam = 0;
  for (let i = 0; i < d.target.test.n; i++) spam += d.target.test.y[i] as number;
  assert.equal(spam, Math.round(0.2 * 1396));
});

test('a tiny run has every strategy at every round and writes a report', async () => {
  const result = runLottery(tiny);
  assert.equal(result.points.length, 3 * INIT_STRATEGIES.length);
  assert.equal(result.rounds.length, 3);
  const last = result.rounds[2];
  assert.ok(last !== undefined && Math.abs(last.sparsity - 0.75) < 0.01);
  for (const p of result.points) assert.ok(p.accuracy >= 0 && p.accuracy <= 1 && Number.isFinite(p.loss));
  const ticket = Mask.fromJSON(result.ticket);
  assert.equal(ticket.sparsity(), last.sparsity);
  const dir = mkdtempSync(join(tmpdir(), 'lottery-'));
  try {
    const paths = await writeLotteryReport(result, dir);
    const html = readFileSync(paths.report, 'utf8');
    assert.ok(html.includes('<svg') && html.includes('random-mask'));
    assert.ok(!html.includes('<script'));
    const json = JSON.parse(readFileSync(paths.results, 'utf8')) as { runs: { points: unknown[] }[] };
    assert.equal(json.runs[0]?.points.length, result.points.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('summaries over seeds are mean and sample sd per round and strategy', () => {
  const base = runLottery({ ...tiny, rounds: 1, strategies: ['reinit'] });
  const shifted = {
    ...base,
    points: base.points.map((p) => ({ ...p, accuracy: p.accuracy + 0.1 })),
  };
  const rows = summarizeLottery([base, shifted]);
  for (const row of rows) {
    const a = base.points.find((p) => p.round === row.round)?.accuracy as number;
    const s = row.target.get('reinit');
    assert.ok(s !== undefined && s.n === 2);
    // Two values a and a + 0.1: mean a + 0.05, sample sd 0.1/√2.
    assert.ok(Math.abs(s.mean - (a + 0.05)) < 1e-12);
    assert.ok(Math.abs(s.sd - 0.1 / Math.SQRT2) < 1e-12);
    assert.equal(row.sourceAccuracy.sd, 0);
  }
  assert.ok(lotteryTableText([base, shifted]).includes('±'));
});

test('bad lottery configs and CLI arguments are rejected before anything runs', async () => {
  assert.throws(() => checkLotteryConfig({ ...tiny, pruneRate: 1 }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, task: 'spam' }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, strategies: [] }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, rounds: 0 }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, rewindStep: 21 }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, domains: { maxTrain: -5 } }), ConfigError);
  assert.throws(() => checkLotteryConfig({ ...tiny, domains: { rotateDegrees: Number.NaN } }), ConfigError);
  assert.throws(
    () => checkLotteryConfig({ ...tiny, targetTrain: { ...tiny.targetTrain, lr: Number.NaN } }),
    ConfigError,
  );
  const write = process.stderr.write;
  process.stderr.write = () => true;
  try {
    assert.equal(await main(['lottery', 'repro', '--task', 'bogus', '--quiet']), 2);
    assert.equal(await main(['lottery', 'repro', '--scope', 'everywhere', '--quiet']), 2);
    assert.equal(await main(['lottery', 'repro', '--seeds', '0', '--quiet']), 2);
  } finally {
    process.stderr.write = write;
  }
});
