/**
 * Online hyperparameter learning for sliding-window kernel ridge regression (issue 5 §2).
 *
 *   runKrr(series, method, config)      rolling h-step forecasts; method: online | fixed | grid | random
 *   KrrWindow                           (K + λI)⁻¹ maintained by bordering inserts / Schur deletes
 *   looResiduals, looGradient           closed-form leave-one(-block)-out error and its log-space gradient
 *   recentResiduals, recentGradient     the most recent forecast errors (newest points from the older ones)
 *   trafficSeries, parsePemsCsv, loadPemsCsv, sensorSeries   data
 *   reproduceKrr, writeKrrReport, reproTable                  reproduction report
 */
export {
  DEFAULT_KRR_CONFIG,
  type KrrConfig,
  type KrrConfigInput,
  METHODS,
  type Method,
  recentPoints,
  resolveKrrConfig,
} from './config.ts';
export {
  interpolateGaps,
  loadPemsCsv,
  type MissingPolicy,
  type PemsColumn,
  type PemsOptions,
  type PemsSeries,
  parsePemsCsv,
  type SensorVariable,
  type Series,
  sensorSeries,
  type TrafficOptions,
  trafficSeries,
} from './data.ts';
export { buildFeatures, type HyperPoint, type KrrRunResult, runKrr } from './forecaster.ts';
export { type Kernel, type KernelSpec, type KernelType, makeKernel } from './kernels.ts';
export {
  blocksOf,
  type LooGradient,
  looGradient,
  looResiduals,
  type RecentErrors,
  recentGradient,
  recentResiduals,
} from './loo.ts';
export { ComputeMeter, type ComputeTotals } from './meter.ts';
export {
  type HeadlineRow,
  headline,
  type KrrReproResult,
  krrReportHtml,
  reproduceKrr,
  reproTable,
  type SeriesSpec,
  STUDY_WINDOWS,
  type WindowRow,
  type WindowRun,
  type WindowStudy,
  windowRows,
  writeKrrReport,
} from './report.ts';
export {
  type Candidate,
  crossValidate,
  gridCandidates,
  randomCandidates,
  retune,
  rollingFolds,
} from './tuning.ts';
export { KrrWindow } from './window.ts';
