import { randomInt } from 'node:crypto'
import { argmax, type VocabRow } from './argmax.js'
import { adjustScores, processLogits, resolveLogitsOptions, type ResolvedLogitsOptions } from './process-logits.js'
import { createRng, type Rng } from './rng.js'
import { sampleFromDistribution } from './sample-from-distribution.js'

export interface SamplerOptions {
  /** 0 means greedy decoding. Default 1. */
  temperature?: number
  /** 0 turns top-k off. Default 0. */
  topK?: number
  /** 1 turns top-p off. Default 1. */
  topP?: number
  /** 1 turns the penalty off. Default 1. */
  repetitionPenalty?: number
  /** Same seed, same logits => same tokens. Default: a random seed. */
  seed?: number
  /** Added to these tokens' logits (OpenAI's logit_bias), greedy or sampling. Default none. */
  logitBias?: ReadonlyMap<number, number>
  /** OpenAI's presence and frequency penalties over the generated tokens (0: off). Default 0. */
  presencePenalty?: number
  frequencyPenalty?: number
  /** Where the generated tokens begin in the sequences `next` and `distribution` are given. Default 0. */
  generatedFrom?: number
}

/**
 * Picks the next token from a row of logits. `distribution()` exposes the exact distribution
 * `next()` draws from (one-hot when greedy), which speculative sampling needs for the target model.
 */
export class Sampler {
  readonly #opts: ResolvedLogitsOptions
  readonly #rng: Rng
  /** The seed in use (given or drawn), to reproduce a run. */
  readonly seed: number

  constructor (opts: SamplerOptions = {}) {
    this.#opts = resolveLogitsOptions(opts)
    this.seed = opts.seed ?? randomInt(2 ** 47)
    this.#rng = createRng(this.seed)
  }

  /** Temperature 0: `next()` is the argmax of the (penalized) logits and uses no randomness. */
  get greedy (): boolean {
    return this.#opts.temperature === 0
  }

  /** The next token for logits (V,) given the tokens so far (prompt + generated, for the repetition penalty). */
  next (logits: VocabRow, previousTokens: Iterable<number> = []): number {
    if (this.greedy) {
      const { repetitionPenalty, logitBias, presencePenalty, frequencyPenalty } = this.#opts
      // the plain argmax copies nothing: no V-sized garbage per token
      if (repetitionPenalty === 1 && logitBias.size === 0 && presencePenalty === 0 && frequencyPenalty === 0) return argmax(logits)
      return argmax(adjustScores(logits, this.#opts, previousTokens))
    }
    return sampleFromDistribution(this.distribution(logits, previousTokens), this.#rng)
  }

  /** The distribution (V,) that `next()` draws from for the same arguments. */
  distribution (logits: VocabRow, previousTokens: Iterable<number> = []): Float64Array {
    return processLogits(logits, { ...this.#opts, previousTokens })
  }

  /** Draws from any distribution (V,) with this sampler's random stream (e.g. a speculative residual). */
  sample (probs: VocabRow): number {
    return sampleFromDistribution(probs, this.#rng)
  }

  /** A uniform float in [0, 1) from this sampler's random stream (e.g. a speculative acceptance test). */
  uniform (): number {
    return this.#rng.next()
  }
}
