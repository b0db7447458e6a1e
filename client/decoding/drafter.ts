import type { Sampler } from '../sampling/index.js'

/** One proposed token and what the verifier needs to judge it. */
export interface DraftToken {
  readonly token: number
  /**
   * The distribution q (V,) the token was drawn from, for speculative sampling;
   * undefined means one-hot at `token` (a deterministic draft: greedy or n-gram).
   */
  readonly q: Float64Array | undefined
  /**
   * How sure the drafter is here, in [0, 1] (greedy: its belief in the token; sampling: its
   * largest probability, since any drawn token is accepted with probability min(1, p/q));
   * drafting may stop when it is low.
   */
  readonly confidence: number
  /**
   * Tokens the target may choose here instead, with the drafter's belief in each: greedy, the
   * runners-up, most likely first; sampling, the verifier's further candidates
   * (keyedCandidate), in the order it tries them. Tree speculation hangs branches off them.
   */
  readonly alternatives?: readonly Alternative[]
}

/** A token the drafter ranked below its pick. */
export interface Alternative {
  readonly token: number
  readonly confidence: number
}

/** Branches to draft greedily, all forking inside one context. */
export interface BranchRequest {
  /** Prompt + accepted + speculation: every branch forks inside it. */
  readonly context: readonly number[]
  /** Branch b puts `token` at context index `at` (>= 1) in place of context[at] and what follows. */
  readonly forks: ReadonlyArray<{ readonly at: number, readonly token: number }>
  /** Tokens to draft after each fork's token. */
  readonly length: number
  /** Sampling: draw each token as `propose` would from the branch's context; absent or greedy: the argmax. */
  readonly sampler?: Sampler
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
  /**
   * Continuations (`length` tokens each, fewer never) of several forks at once, for tree
   * speculation; absent when the drafter cannot (then runs carry no branches).
   */
  continueBranches? (request: BranchRequest): Promise<number[][]>
  /** Frees what the drafter holds (not a model it was given). */
  close? (): Promise<void>
}
