import type { LocalModel, LocalSequence } from '../../model/local-model.js'
import { softmax, type Sampler } from '../sampling/index.js'
import type { DraftRequest, DraftToken, Drafter } from './drafter.js'
import { keyedRandom } from './keyed-random.js'

/**
 * Drafts with a small model of the same tokenizer, run whole on the client. Keeps its own
 * position-addressed KV cache: each call feeds only the context tokens it has not cached
 * and rolls back past a changed prefix, so a rejected speculation costs no re-prefill.
 *
 * Greedy decoding drafts the argmax (confidence: its softmax probability at temperature 1);
 * sampling draws from q, the sampler's distribution over the draft logits, with randomness
 * keyed by (seed, position) so the same context always gets the same proposal.
 */
export class DraftModelDrafter implements Drafter {
  readonly #model: LocalModel
  #sequence: LocalSequence
  /** Tokens whose keys and values are cached, at positions 0.. */
  #cached: number[] = []
  /** logits (V,) after the last cached token */
  #lastRow: Float32Array | undefined
  #busy = false

  constructor (model: LocalModel) {
    this.#model = model
    this.#sequence = model.newSession()
  }

  async propose ({ context, maxTokens, sampler, minConfidence = 0 }: DraftRequest): Promise<DraftToken[]> {
    if (context.length === 0) throw new RangeError('Cannot draft from an empty context: it needs at least one token')
    if (this.#busy) throw new Error('Cannot draft while another proposal is being drafted: calls must be made one at a time')
    this.#busy = true
    try {
      const seq = [...context]
      const out: DraftToken[] = []
      while (out.length < maxTokens) {
        const draft = this.#pick(await this.#nextRow(seq), seq, sampler)
        out.push(draft)
        seq.push(draft.token)
        if (draft.confidence < minConfidence) break
      }
      return out
    } finally {
      this.#busy = false
    }
  }

  /** Forgets the cache (the model stays with its owner). */
  async close (): Promise<void> {
    this.#sequence = this.#model.newSession()
    this.#cached = []
    this.#lastRow = undefined
  }

  /** logits (V,) for the token after `seq`, feeding only what the cache lacks. */
  async #nextRow (seq: readonly number[]): Promise<Float32Array> {
    let common = 0
    const limit = Math.min(seq.length, this.#cached.length)
    while (common < limit && seq[common] === this.#cached[common]) common++
    if (common === seq.length && common === this.#cached.length && this.#lastRow !== undefined) return this.#lastRow
    const start = Math.min(common, seq.length - 1) // always feed at least the last token for its row
    const rows = await this.#sequence.forward(seq.slice(start), start) // (T, V)
    this.#cached = [...seq]
    this.#lastRow = rows.at(-1)
    if (this.#lastRow === undefined) throw new Error(`Draft model returned no logits for ${seq.length - start} tokens`)
    return this.#lastRow
  }

  /** One draft token from the row (V,) that follows `seq`. */
  #pick (row: Float32Array, seq: readonly number[], sampler: Sampler): DraftToken {
    if (sampler.greedy) {
      const token = sampler.next(row, seq)
      return { token, q: undefined, confidence: softmax(Float64Array.from(row))[token] ?? 0 }
    }
    const q = sampler.distribution(row, seq)
    const token = keyedRandom(sampler.seed, seq.length, 'draft').sample(q)
    return { token, q, confidence: q[token] ?? 0 }
  }
}
