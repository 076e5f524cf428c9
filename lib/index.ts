/**
 * fusedpo: fused log-softmax-gather + preference losses (DPO, MinorDPO and their family) with
 * their backward pass, in native code. This file is the whole public surface.
 */
export {
  LOSSES,
  LOSS_NAMES,
  PARAMETERS,
  REFERENCE_FREE_LOSSES,
  lossEntry,
  preferenceLoss,
  preferenceLossAsync,
  sequenceLogps,
  type LogitsDType,
  type Logits,
  type CanonicalLossName,
  type LossEntry,
  type LossInputArgs,
  type LossName,
  type LossNumberParameters,
  type LossParameterArgs,
  type NllReduction,
  type PreferenceLossArgs,
  type PreferenceLossResult,
  type PreferenceMetrics,
  type SequenceLogpsArgs,
  type SequenceLogpsResult,
  type TensorSequenceLogpsArgs,
  type TensorPreferenceLossArgs,
  type TensorPreferenceLossResult,
  type DevicePreferenceLossArgs,
  type DevicePreferenceLossResult,
} from './losses';
export { Tensor, hostEmptyCache, hostMemory, keep, withScope, type Device, type HostMemory, type TensorDType } from './tensor';
export { noGrad, isGradEnabled } from './autograd';
export * as F from './functional';
export { FusedpoError, NativeLoadError, NonFiniteLogitError } from './errors';
export { setThreads, cudaAvailable, cudaMemory, cudaEmptyCache, type CudaInfo, type CudaDevice, type CudaMemory } from './native';
export { doctorReport, type DoctorReport } from './doctor';
export { version } from './version';
export { fromBf16, fromF16, toBf16, toF16 } from './dtype';
export { Module } from './nn/module';
export { Block, CausalSelfAttention, Embedding, LayerNorm, Linear, MLP, ModuleList, normalRandom, type LinearOptions, type NormalRandom } from './nn/layers';
export { CausalLM, isCausalLM, type CausalLMConfig, type Decoder } from './nn/causal_lm';
export { GPT, type GPTConfig, type GPTOptions } from './nn/gpt';
export { LlamaModel, type LlamaArchitecture, type LlamaConfig, type LlamaOptions } from './nn/llama';
export { ConfigKeyError, llamaConfigJson, llamaConfigOf } from './nn/llama_config';
export { MODEL_TYPES } from './nn/architectures';
export type { RopeScaling } from './nn/rope_tables';
export { AdamW, clipGradNorm, cosineSchedule, type AdamWOptions, type CosineScheduleOptions, type Parameters } from './optim';
export {
  encodeSafetensors,
  loadSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  saveSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  type SafetensorsTensor,
} from './safetensors';
export {
  DEFAULT_MAX_LINE_BYTES,
  DatasetError,
  MAX_JSON_FILE_BYTES,
  readPreferenceDataset,
  readSftDataset,
  renderChat,
  type BadRecord,
  type ChatMessage,
  type DatasetRead,
  type PreferenceRecord,
  type ReadOptions,
  type SftRecord,
} from './data/dataset';
export {
  BpeTokenizer,
  ByteTokenizer,
  TokenizerError,
  byteTokenizerJSON,
  loadTokenizer,
  loadTokenizerFolder,
  type ChatTemplateOptions,
  type EncodeOptions,
  type TemplateMessage,
  type Tokenizer,
  type TokenizerDescription,
} from './data/tokenizer';
export {
  collatePreferences,
  collateSft,
  shiftedLabels,
  tokenizePreferences,
  tokenizeSft,
  encodePrompt,
  type PreferenceBatch,
  type TokenBatch,
  type TokenizeOptions,
  type TokenizedPair,
  type TokenizedSft,
  type TruncationReport,
} from './data/batch';
export {
  PreferenceTrainer,
  SftTrainer,
  stepMemoryBytes,
  type DataReport,
  type PreferenceTrainerOptions,
  type SkippedRecord,
  type SftTrainerOptions,
  type StepMetrics,
  type TrainerCallbacks,
  type TrainerOptions,
  type TrainResult,
} from './train/trainer';
export { TrainingFileError, loadModelFolder, saveModelFolder, tokenizerIdentity, type ModelFolder } from './train/files';
export { LOCK_FILE, RUN_ENTRIES, RUN_SHARD, claimRunFolder, isRunEntry, type ClaimOptions, type RunFolder, type RunInput } from './train/run_folder';
export { watchInterrupts, type InterruptWatch } from './train/interrupt';
export { extrapolatedReference, frozenCopy, pairLogps, precomputeReference, syncReference, type PairLogps } from './train/reference';
export { PretrainedError, huggingFaceTokenizer, isHuggingFaceFolder, loadPretrained, pretrainedSource, savePretrained, type PretrainedSource, type SavePretrainedOptions } from './nn/pretrained';
export { generate, type GenerateOptions } from './nn/generate';
export {
  evaluatePreferences,
  exactMatch,
  formatEvaluation,
  greedyCompletion,
  type Checker,
  type EvaluatedPair,
  type EvaluateOptions,
  type Evaluation,
} from './train/evaluate';
export { renderReport, writeReport } from './report/html';
export { readRun, type MetricRow, type RunRecord, type SampleLog } from './report/run';
export { formatSummary, sparkline } from './report/summary';
