/**
 * The guard's public surface: `Guard`, the backend registry, and the pieces integrators reuse
 * (rendering, parsing, images, taxonomy). Backends themselves load lazily through the registry.
 */

export type { BackendFactory, BackendFactoryOptions, BackendKind } from './backends/registry.ts';
export { createBackend, registerBackendFactory } from './backends/registry.ts';
export { parseOpenAIConversation, readConversationFile } from './conversation.ts';
export type { CheckInput, CheckOptions, CheckRequest, GuardOptions, PromptOptions } from './guard.ts';
export { Guard, preparePrompt } from './guard.ts';
export { DEFAULT_MAX_IMAGE_BYTES, imageToDataUrl, loadImage, sniffImageType } from './image.ts';
export { parseGuardOutput } from './parse.ts';
export { DEFAULT_THRESHOLD, pUnsafeFromLogits } from './score.ts';
export {
  defaultCategories,
  HAZARD_CATEGORIES,
  MODEL_CARD_NAMES,
  parseCategories,
  resolvePolicy,
} from './taxonomy.ts';
export * from './types.ts';
