/**
 * Built-in experiments that need no files. Each is a raw config run through the same validation as a
 * user's --config, so a preset can never bypass the schema.
 *
 * Choices shared by the MNIST presets:
 * - The bundled `mnist` package holds 10,000 digits (8,500 for training after the 15% test hold-out), so
 *   clients are small (3000 clients: ~3 examples each; 4000: ~2), like phones with few labelled samples.
 * - Label-skewed clients (Dirichlet α = 0.5 over classes): the realistic cross-device case and the one
 *   where staleness and client drift matter; IID MNIST makes every method look alike.
 * - Half-normal on-device training times (the FedBuff paper's model), concurrency-capped saturation.
 * - Sync baseline (FedAvgM: server momentum 0.9) selects 30% extra clients and closes a round at
 *   cohortSize reports, so its concurrency (cohort × 1.3) matches the asynchronous methods'.
 * - FedBuff (K = 10) and FedAsync both weight stale updates by 1/√(1 + staleness).
 */
import { ConfigError } from '../core/errors.ts';
import { type ExperimentConfig, parseExperimentConfig } from './config.ts';

interface Preset {
  readonly description: string;
  readonly raw: () => Record<string, unknown>;
}

/**
 * The MNIST setting the presets share: Dirichlet(0.5) label skew, softmax regression, one local epoch
 * of batch 10, half-normal training times (σ = 1 virtual s), evaluation every 5 versions on a fixed
 * 2,000-example subset.
 */
function skewedMnistSoftmax(o: {
  numClients: number;
  concurrency: number;
  maxTrips: number;
  clientLr: number;
}): Record<string, unknown> {
  return {
    dataset: { kind: 'mnist', numClients: o.numClients, partition: { kind: 'dirichlet', alpha: 0.5 } },
    model: { kind: 'softmax' },
    local: { epochs: 1, batchSize: 10, lr: o.clientLr },
    sim: {
      concurrency: o.concurrency,
      duration: { kind: 'half_normal', sigma: 1 },
      maxTrips: o.maxTrips,
      evalEvery: 5,
      evalSubset: 2000,
    },
  };
}

/** FedBuff vs FedAvgM vs FedAsync at one concurrency; the sync cohort is sized to match it. */
function threeMethods(concurrency: number, bufferSize: number): Array<Record<string, unknown>> {
  const cohortSize = Math.floor(concurrency / 1.3);
  return [
    {
      label: `FedBuff (K=${bufferSize})`,
      strategy: {
        kind: 'fedbuff',
        bufferSize,
        staleness: { kind: 'polynomial', exponent: 0.5 },
        serverOptimizer: { kind: 'sgd', lr: 1 },
      },
    },
    {
      label: `FedAvgM (cohort ${cohortSize})`,
      strategy: {
        kind: 'sync',
        cohortSize,
        overSelection: 0.3,
        serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.9 },
      },
    },
    {
      label: 'FedAsync',
      strategy: { kind: 'fedasync', alpha: 0.6, staleness: { kind: 'polynomial', exponent: 0.5 } },
    },
  ];
}

const PRESETS: Record<string, Preset> = {
  default: {
    description:
      'FedBuff vs FedAvgM vs FedAsync on label-skewed MNIST (3000 clients, softmax), concurrency 100, lr-tuned; under a minute',
    raw: () => ({
      name: 'default',
      description:
        'FedBuff (K=10) vs FedAvgM vs FedAsync on MNIST split over 3000 clients by Dirichlet(0.5) label skew; ' +
        'softmax regression; 100 clients training at once with half-normal training times (σ = 1 virtual s). ' +
        'Client and server learning rates are picked per method from one grid by accuracy after 2000 trips; ' +
        'each full run stops at the target accuracy or after 30,000 client trips.',
      seed: 1,
      target: 0.9,
      ...skewedMnistSoftmax({ numClients: 3000, concurrency: 100, maxTrips: 30000, clientLr: 0.05 }),
      tuning: {
        clientLr: [0.1, 0.3, 1],
        serverLr: [0.1, 0.3, 1],
        budget: { maxTrips: 2000 },
        metric: 'final_accuracy',
      },
      runs: threeMethods(100, 10),
    }),
  },
  'headline-100': {
    description:
      'FedBuff-paper comparison at concurrency 100: time and trips to target, every method lr-tuned on one grid and budget',
    raw: () => headline(100, 3000, 10),
  },
  'headline-1000': {
    description:
      'FedBuff-paper comparison at concurrency 1000: time and trips to target, every method lr-tuned on one grid and budget',
    raw: () => headline(1000, 4000, 10),
  },
  'dp-fedbuff': {
    description:
      'FedBuff vs DP-FedBuff vs DP-FedAvgM on label-skewed MNIST at ε ∈ {8, 4, 1}, δ = 1/N (user-level, N = 3000 clients); under a minute',
    raw: () => dpComparison([8, 4, 1]),
  },
  'fedbuff-secagg': {
    description:
      'FedBuff vs FedBuff+SecAgg (each buffer of 10 summed by the real protocol; groups by arrival, and at check-in), same seed: accuracy equal to fixed-point precision; under a minute',
    raw: () => secAggComparison(),
  },
  quick: {
    description: 'tiny Synthetic(1,1) run of all three methods; finishes in seconds (used by tests)',
    raw: () => ({
      name: 'quick',
      description: 'Smoke test: 60 Synthetic(1,1) clients, softmax, concurrency 10, 300 trips per method.',
      seed: 7,
      target: 0.4,
      dataset: {
        kind: 'synthetic',
        numClients: 60,
        dim: 20,
        numClasses: 5,
        examplesPerClient: 20,
        testSize: 400,
      },
      model: { kind: 'softmax' },
      local: { epochs: 1, batchSize: 10, lr: 0.1 },
      sim: {
        concurrency: 10,
        duration: { kind: 'half_normal', sigma: 1 },
        maxTrips: 300,
        evalEvery: 2,
      },
      stopAtTarget: false,
      runs: [
        {
          label: 'FedBuff (K=5)',
          strategy: { kind: 'fedbuff', bufferSize: 5, serverOptimizer: { kind: 'sgd', lr: 1 } },
        },
        {
          label: 'FedAvgM (cohort 8)',
          strategy: {
            kind: 'sync',
            cohortSize: 8,
            overSelection: 0.25,
            serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.9 },
          },
        },
        { label: 'FedAsync', strategy: { kind: 'fedasync', alpha: 0.6 } },
      ],
    }),
  },
};

/**
 * FedBuff with and without secure aggregation, everything else equal: each buffer of K = 10 updates
 * is one SecAgg group (X25519, AES-CTR masks, Shamir shares; node:crypto), so the server learns only
 * the buffer's weighted sum. Softmax on MNIST (7,850 parameters) keeps the cryptography cheap.
 * The third run forms groups at check-in (13 members, the first 10 reports close a group, 3 virtual
 * seconds timeout once the group is full): deployable without extra rounds after training, but its
 * buffers differ from plain FedBuff's, so it is compared on accuracy, not step by step.
 */
function secAggComparison(): Record<string, unknown> {
  const fedbuff = { kind: 'fedbuff', bufferSize: 10, serverOptimizer: { kind: 'sgd', lr: 1 } };
  return {
    name: 'fedbuff-secagg',
    description:
      'FedBuff (K=10) with and without secure aggregation on MNIST split over 500 clients by Dirichlet(0.5) ' +
      'label skew; softmax regression; 20 clients training at once; 1,000 trips (100 SecAgg groups). ' +
      'A third run forms each group at check-in (13 members, closed by 10 reports or a 3 s timeout).',
    seed: 3,
    target: 0.8,
    stopAtTarget: false,
    ...skewedMnistSoftmax({ numClients: 500, concurrency: 20, maxTrips: 1000, clientLr: 0.1 }),
    runs: [
      { label: 'FedBuff (K=10)', strategy: fedbuff },
      {
        label: 'FedBuff+SecAgg (K=10)',
        strategy: { ...fedbuff, secureAggregation: { clipRange: 1, mode: 'secagg' } },
      },
      {
        label: 'FedBuff+SecAgg check-in (K=10 of 13)',
        strategy: {
          ...fedbuff,
          secureAggregation: {
            clipRange: 1,
            mode: 'secagg',
            grouping: 'checkin',
            overSelection: 0.3,
            groupTimeout: 3,
          },
        },
      },
    ],
  };
}

/**
 * User-level DP comparison. 100 updates per step (DP needs many users per step: the noise on the
 * mean is σC/K per coordinate), so q = 100/3000; σ is calibrated so that the planned 150 steps
 * (15,000 accepted updates) spend exactly the target ε, and the budget stops each DP run there with
 * stopReason 'privacy_budget'. Clipping adapts to the median update norm (its privatized count is
 * folded into the accounted σ). No learning-rate tuning: tuning on the clients' data would itself
 * spend privacy, so every method runs with the same fixed rates; the non-private FedBuff with the
 * same K is the reference.
 */
function dpComparison(epsilons: readonly number[]): Record<string, unknown> {
  const k = 100;
  const plannedSteps = 150;
  const numClients = 3000;
  const privacy = (epsilon: number) => ({
    adaptive: { targetQuantile: 0.5, initialClipNorm: 0.5, learningRate: 0.2, countNoiseMultiplier: k / 20 },
    targetEpsilon: epsilon,
    delta: 1 / numClients,
    plannedSteps,
    accountant: 'rdp',
    budget: { epsilon },
  });
  return {
    name: 'dp-fedbuff',
    description:
      `FedBuff vs DP-FedBuff vs DP-FedAvgM at ε ∈ {${epsilons.join(', ')}}, δ = 1/${numClients} (user-level DP, RDP ` +
      `accountant, q = ${k}/${numClients} per step, σ calibrated for ${plannedSteps} steps) on MNIST split over ${numClients} ` +
      'clients by Dirichlet(0.5) label skew; softmax regression; 200 clients training at once, half-normal ' +
      'training times. DP runs stop when the next step would exceed the budget.',
    seed: 1,
    target: 0.8,
    stopAtTarget: false,
    ...skewedMnistSoftmax({ numClients, concurrency: 200, maxTrips: 16000, clientLr: 0.3 }),
    runs: [
      {
        label: `FedBuff (K=${k}, no DP)`,
        strategy: { kind: 'fedbuff', bufferSize: k, serverOptimizer: { kind: 'sgd', lr: 1 } },
      },
      ...epsilons.flatMap((epsilon) => [
        {
          label: `DP-FedBuff (K=${k}, ε=${epsilon})`,
          strategy: {
            kind: 'fedbuff',
            bufferSize: k,
            staleness: { kind: 'polynomial', exponent: 0.5 },
            serverOptimizer: { kind: 'sgd', lr: 1 },
            privacy: privacy(epsilon),
          },
        },
        {
          label: `DP-FedAvgM (cohort ${k}, ε=${epsilon})`,
          strategy: {
            kind: 'sync',
            cohortSize: k,
            overSelection: 0.3,
            serverOptimizer: { kind: 'momentum', lr: 1, momentum: 0.9 },
            privacy: privacy(epsilon),
          },
        },
      ]),
    ],
  };
}

/**
 * The headline comparison. Tuning: every method tries the same client-lr × server-lr grid for the same
 * budget of client trips (server lr is FedAsync's mixing rate α, hence a grid capped at 1), ranked by
 * accuracy at the end of the budget; the winner then runs until the target or the trip cap.
 */
function headline(concurrency: number, numClients: number, bufferSize: number): Record<string, unknown> {
  const maxTrips = concurrency === 100 ? 40000 : 100000;
  const budgetTrips = concurrency === 100 ? 5000 : 20000;
  return {
    name: `headline-${concurrency}`,
    description:
      `FedBuff (K=${bufferSize}) vs FedAvgM vs FedAsync at concurrency ${concurrency} on MNIST split over ` +
      `${numClients} clients by Dirichlet(0.5) label skew; softmax regression; half-normal training times ` +
      `(σ = 1 virtual s). Each method's client and server learning rates are picked from the same grid by ` +
      `accuracy after ${budgetTrips} client trips; full runs stop at the target or after ${maxTrips} trips.`,
    seed: 1,
    target: 0.9,
    ...skewedMnistSoftmax({ numClients, concurrency, maxTrips, clientLr: 0.05 }),
    tuning: {
      clientLr: [0.1, 0.3, 1],
      serverLr: [0.1, 0.3, 1],
      budget: { maxTrips: budgetTrips },
      metric: 'final_accuracy',
    },
    runs: threeMethods(concurrency, bufferSize),
  };
}

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** Name and one-line description of every preset. */
export function listPresets(): Array<{ name: string; description: string }> {
  return Object.entries(PRESETS).map(([name, p]) => ({ name, description: p.description }));
}

/** The validated config of a preset; unknown names are a ConfigError listing the known ones. */
export function presetConfig(name: string): ExperimentConfig {
  const preset = PRESETS[name];
  if (preset === undefined) {
    throw new ConfigError(
      [{ path: 'preset', message: `unknown preset '${name}'; known: ${presetNames().join(', ')}` }],
      'preset',
    );
  }
  return parseExperimentConfig(preset.raw());
}

/** The raw (unvalidated, defaults not filled) config of a preset, e.g. to start a config file from. */
export function presetRaw(name: string): Record<string, unknown> | undefined {
  return PRESETS[name]?.raw();
}
