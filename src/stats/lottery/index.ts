/**
 * Lottery tickets under distribution shift (issue 5 §3): masks over a model's flat parameters, iterative
 * magnitude pruning with rewinding, shifted domains, and the transfer experiment with its report.
 */
export {
  Mask,
  type MaskedModel,
  type MaskJson,
  maskedModel,
  type ParamSegment,
  paramSegments,
  type SegmentRole,
  type SegmentSparsity,
} from './mask.ts';
export { magnitudePrune, type PruneOptions, type PruneScope, randomMaskLike } from './prune.ts';
export {
  type LotteryReportPaths,
  lotteryReportHtml,
  lotteryTableText,
  writeLotteryReport,
} from './report.ts';
export {
  bilinear,
  type ElasticOptions,
  elasticDeform,
  invertImage,
  mapImages,
  rotateImage,
  spamCollections,
} from './shift.ts';
export {
  type ImpOptions,
  type ImpResult,
  type ImpRound,
  iterativeMagnitudePruning,
  type TrainOptions,
  type TrainResult,
  trainSteps,
} from './train.ts';
export {
  buildDomains,
  checkLotteryConfig,
  type DomainOptions,
  type DomainPair,
  INIT_STRATEGIES,
  type InitStrategy,
  LOTTERY_TASKS,
  type LotteryConfig,
  type LotteryModelSpec,
  type LotteryResult,
  type LotteryTask,
  lotteryPreset,
  runLottery,
  type TransferPoint,
} from './transfer.ts';
