import type { Sampler } from '../sampling/index.js'

/** One proposed token and what the verifier needs to judge it. */
export interface DraftToken {
  readonly token: number
  /**
   * The distribution q (V,) the token was drawn from, for speculative sampling;
   * undefined means one-hot at `token` (a deterministic draft: greedy or n-gram).
   */
  readonly q: Float64Array | undefined
  /** The drafter's own belief in the token, in [0, 1]; drafting may stop when it is low. */
  readonly confidence: number
}

/** What a drafter is asked for. */
export interface DraftRequest {
  /** Every token before the first proposed one: prompt + accepted + earlier speculation. */
  readonly context: readonly number[]
  /** Propose at most this many tokens (>= 1). */
  readonly maxTokens: number
  /**
   * The decoding sampler: greedy or not, the settings that shape q (temperature, top-k,
   * top-p, repetition penalty over `context`) and the seed that keys draft randomness.
   */
  readonly sampler: Sampler
  /** Stop after the first token whose confidence is below this (that token is still returned). Default 0. */
  readonly minConfidence?: number
}

/**
 * Proposes tokens that continue a context, for the target model to verify.
 *
 * Contract, which makes seeded sampling reproducible whatever the run layout: the token
 * proposed at position `context.length` depends only on `context` and the sampler (its
 * settings and seed), never on `maxTokens`, `minConfidence` or earlier calls. Calls are
 * made one at a time.
 */
export interface Drafter {
  propose (request: DraftRequest): Promise<DraftToken[]>
  /** Frees what the drafter holds (not a model it was given). */
  close? (): Promise<void>
}
