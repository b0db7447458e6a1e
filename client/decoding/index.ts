/**
 * Decoding over a TargetModel: plain, draft-then-verify (sync) and PipeInfer-pipelined
 * speculative decoding, with a draft-model or n-gram drafter.
 */
export { decode, decodeAll, DEFAULT_K, type DecodeOptions } from './decode.js'
export { percentile, type DecodeMode, type DecodeStats, type DecodeStopReason } from './decode-stats.js'
export type { DraftRequest, DraftToken, Drafter } from './drafter.js'
export { DraftModelDrafter, loadDraftModel, type DraftModel, type DraftSequence, type DraftSequenceModel } from './draft-model-drafter.js'
export { NgramDrafter, type NgramDrafterInit } from './ngram-drafter.js'
export { keyedRandom, type RandomPurpose, type RandomSource } from './keyed-random.js'
export { expectedTokens, planSpeculation, SpeculationController, type LearnedSpeculation, type SpeculationControllerInit, type SpeculationEstimates, type SpeculationLimits, type SpeculationPlan } from './speculation-controller.js'
export { SpeculationMemory } from './speculation-memory.js'
export { keyedCandidate, keyedCandidates, residualDistribution, SAMPLED_CANDIDATES, verifyCandidates, verifyToken, type DraftGuess, type Verdict } from './verify-token.js'
export { MAX_TOP_LOGPROBS, newLogprobLog, tokenLogprob, type LogprobLog, type TokenLogprob } from './token-logprobs.js'
