/**
 * Convex latent-effect logit (β_i = w + u_i, sparse w, low-rank U) with its baselines, data loaders and
 * reproduction. See solver.ts for the estimator, baselines.ts for pooled / per-individual / mixed logit.
 */
export {
  type BaselineFit,
  fitMixedLogit,
  fitPerIndividualLogit,
  fitPooledLogit,
  fitRidgeLogit,
  type MixedLogitFit,
  type MixedLogitOptions,
  type MixedLogitStart,
  mixedLogitHeldOutLogLik,
  mixedLogitObjective,
  type PooledFit,
} from './baselines.ts';
export { choiceCsv, loadChoiceCsv, parseChoiceCsv } from './csv.ts';
export {
  type BinaryIndividual,
  type BinaryPanel,
  type ChoiceIndividual,
  type ChoicePanel,
  type ChoiceSituation,
  type CompiledPanel,
  compilePanel,
  type Panel,
  selectSituations,
  splitHoldout,
} from './data.ts';
export {
  firstPrimes,
  haltonNormalDraws,
  haltonSequence,
  inverseNormalCdf,
  radicalInverse,
} from './halton.ts';
export { composeCoefficients, meanLogLik, meanNll, relativeError, situationNlls } from './model.ts';
export { nuclearNorm, singularValueThreshold, softThreshold, spectralNorm, truncateRank } from './prox.ts';
export { type LogitReportPaths, logitReportHtml, reproTable, writeLogitReport } from './report.ts';
export {
  FULL_SETTINGS,
  type LogitReproOptions,
  type LogitReproResult,
  type MethodResult,
  QUICK_SETTINGS,
  type ReproSetting,
  runLogitRepro,
  type SettingResult,
} from './repro.ts';
export { type SimulatedPanel, type SimulationConfig, simulatePanel } from './simulate.ts';
export {
  type ConvergenceCertificate,
  fitLatentLogit,
  fitLatentLogitPath,
  geometricGrid,
  type LambdaMax,
  type LatentLogitFit,
  type LatentLogitOptions,
  lambdaMax,
  type PathOptions,
  type PathPoint,
  type PathResult,
  type RankSelection,
  type SolverOptions,
  truncateFit,
} from './solver.ts';
