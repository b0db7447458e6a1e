import { applyTopP } from './apply-top-p.js'
import { argmax, type VocabRow } from './argmax.js'

/** How a row of logits becomes the distribution a token is drawn from (Hugging Face semantics). */
export interface LogitsOptions {
  /** Divides the logits; 0 means greedy (all mass on the argmax). Default 1. */
  temperature?: number
  /** Keep only the k largest logits (ties with the k-th kept); 0 turns it off. Default 0. */
  topK?: number
  /** Keep the smallest set of most likely tokens whose mass exceeds top_p; 1 turns it off. Default 1. */
  topP?: number
  /** > 1 makes tokens in `previousTokens` less likely; 1 turns it off. Default 1. */
  repetitionPenalty?: number
  /** Tokens already in the sequence (prompt and generated), for the repetition penalty. */
  previousTokens?: Iterable<number>
  /**
   * OpenAI's presence and frequency penalties: subtracted from the logit of each token that
   * the generated tokens hold, once (presence) and once per occurrence (frequency). 0 turns
   * them off. Default 0.
   */
  presencePenalty?: number
  frequencyPenalty?: number
  /** Where the generated tokens begin in `previousTokens` (what presence and frequency count). Default 0. */
  generatedFrom?: number
  /** Added to these tokens' logits after the penalty (OpenAI's logit_bias): -100 bans a token, +100 all but forces it. */
  logitBias?: ReadonlyMap<number, number>
}

/** Validated settings, defaults filled in. */
export interface ResolvedLogitsOptions {
  readonly temperature: number
  readonly topK: number
  readonly topP: number
  readonly repetitionPenalty: number
  readonly presencePenalty: number
  readonly frequencyPenalty: number
  readonly generatedFrom: number
  readonly logitBias: ReadonlyMap<number, number>
}

/** Fills defaults and checks ranges; the RangeError states the bound and the value. */
export function resolveLogitsOptions (opts: LogitsOptions = {}): ResolvedLogitsOptions {
  const { temperature = 1, topK = 0, topP = 1, repetitionPenalty = 1, presencePenalty = 0, frequencyPenalty = 0, generatedFrom = 0, logitBias = new Map<number, number>() } = opts
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new RangeError(`Cannot sample with temperature ${temperature}: it must be a finite number >= 0`)
  if (!(Number.isInteger(topK) && topK >= 0)) throw new RangeError(`Cannot sample with top_k ${topK}: it must be an integer >= 0`)
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`Cannot sample with top_p ${topP}: it must be in (0, 1]`)
  if (!(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0)) throw new RangeError(`Cannot sample with repetition_penalty ${repetitionPenalty}: it must be a finite number > 0`)
  if (!Number.isFinite(presencePenalty)) throw new RangeError(`Cannot sample with presence_penalty ${presencePenalty}: it must be a finite number`)
  if (!Number.isFinite(frequencyPenalty)) throw new RangeError(`Cannot sample with frequency_penalty ${frequencyPenalty}: it must be a finite number`)
  if (!(Number.isInteger(generatedFrom) && generatedFrom >= 0)) throw new RangeError(`Cannot count generated tokens from ${generatedFrom}: it must be an integer >= 0`)
  for (const [id, bias] of logitBias) {
    if (!(Number.isInteger(id) && id >= 0)) throw new RangeError(`Cannot bias token ${id}: a token id is an integer >= 0`)
    if (!Number.isFinite(bias)) throw new RangeError(`Cannot bias token ${id} by ${bias}: a bias is a finite number`)
  }
  return { temperature, topK, topP, repetitionPenalty, presencePenalty, frequencyPenalty, generatedFrom, logitBias }
}

/**
 * Logits -> the probability distribution that sampling draws from, in Hugging Face's order:
 * repetition penalty (positive logits of seen tokens divided by the penalty, negative ones
 * multiplied), then OpenAI's presence and frequency penalties and logit bias, temperature,
 * top-k, top-p, softmax. Filtered tokens get probability exactly 0;
 * at least one token always survives. Temperature 0 gives a one-hot row at the argmax of the
 * penalized logits.
 *
 * logits (V,) -> probs (V,), summing to 1
 */
export function processLogits (logits: VocabRow, opts: LogitsOptions = {}): Float64Array {
  const resolved = resolveLogitsOptions(opts)
  const { temperature, topK, topP } = resolved
  const V = logits.length
  if (V === 0) throw new RangeError('Cannot build a distribution over an empty row: vocabulary size is 0')
  const scores = adjustScores(logits, resolved, opts.previousTokens)

  if (temperature === 0) {
    const probs = new Float64Array(V)
    probs[argmax(scores)] = 1
    return probs
  }
  if (temperature !== 1) for (let i = 0; i < V; i++) scores[i] = (scores[i] as number) / temperature
  if (topK > 0 && topK < V) {
    const kth = kthLargest(scores, topK)
    for (let i = 0; i < V; i++) if ((scores[i] as number) < kth) scores[i] = -Infinity
  }
  const probs = softmax(scores)
  if (topP < 1) applyTopP(probs, topP)
  return probs
}

/**
 * The logits with the repetition penalty applied, as a float64 copy.
 *
 * logits (V,) -> scores (V,)
 */
export function penalize (logits: VocabRow, penalty: number, previousTokens: Iterable<number> | undefined): Float64Array {
  const scores = Float64Array.from(logits)
  if (penalty === 1 || previousTokens === undefined) return scores
  for (const id of new Set(previousTokens)) {
    if (!(Number.isInteger(id) && id >= 0 && id < scores.length)) continue
    const s = scores[id] as number
    scores[id] = s < 0 ? s * penalty : s / penalty
  }
  return scores
}

/**
 * Every adjustment before temperature: the repetition penalty, presence and frequency
 * penalties, logit bias, as a float64 copy of the logits.
 *
 * logits (V,) -> scores (V,)
 */
export function adjustScores (logits: VocabRow, opts: ResolvedLogitsOptions, previousTokens: Iterable<number> | undefined): Float64Array {
  const scores = penalize(logits, opts.repetitionPenalty, previousTokens)
  if ((opts.presencePenalty !== 0 || opts.frequencyPenalty !== 0) && previousTokens !== undefined) {
    penalizeGenerated(scores, [...previousTokens].slice(opts.generatedFrom), opts.presencePenalty, opts.frequencyPenalty)
  }
  return addBias(scores, opts.logitBias)
}

/**
 * OpenAI's penalties, in place: each token the generated ones hold loses `presence` once and
 * `frequency` per occurrence (ids past the vocabulary change nothing); returns `scores`.
 */
export function penalizeGenerated (scores: Float64Array, generated: readonly number[], presence: number, frequency: number): Float64Array {
  const counts = new Map<number, number>()
  for (const id of generated) counts.set(id, (counts.get(id) ?? 0) + 1)
  for (const [id, n] of counts) {
    if (Number.isInteger(id) && id >= 0 && id < scores.length) scores[id] = (scores[id] as number) - presence - frequency * n
  }
  return scores
}

/** Adds each biased token's bias to its score, in place (ids past the vocabulary change nothing); returns `scores`. */
export function addBias (scores: Float64Array, bias: ReadonlyMap<number, number>): Float64Array {
  for (const [id, b] of bias) if (id < scores.length) scores[id] = (scores[id] as number) + b
  return scores
}

/** Numerically stable softmax; -Infinity entries get exactly 0. scores (V,) -> probs (V,) */
export function softmax (scores: Float64Array): Float64Array {
  let max = -Infinity
  for (const s of scores) if (s > max) max = s
  const probs = new Float64Array(scores.length)
  let sum = 0
  for (let i = 0; i < scores.length; i++) {
    const e = Math.exp((scores[i] as number) - max)
    probs[i] = e
    sum += e
  }
  for (let i = 0; i < probs.length; i++) probs[i] = (probs[i] as number) / sum
  return probs
}

/** The k-th largest value (1-based) of a row, by a min-heap of the k largest seen: O(V log k). */
function kthLargest (values: Float64Array, k: number): number {
  const heap = new Float64Array(k) // min-heap of the k largest so far
  let size = 0
  for (const v of values) {
    if (size < k) {
      let i = size++
      while (i > 0 && (heap[(i - 1) >> 1] as number) > v) {
        heap[i] = heap[(i - 1) >> 1] as number
        i = (i - 1) >> 1
      }
      heap[i] = v
    } else if (v > (heap[0] as number)) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= k) break
        const c = l + 1 < k && (heap[l + 1] as number) < (heap[l] as number) ? l + 1 : l
        if ((heap[c] as number) >= v) break
        heap[i] = heap[c] as number
        i = c
      }
      heap[i] = v
    }
  }
  return heap[0] as number
}
