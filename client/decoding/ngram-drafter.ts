import type { DraftRequest, DraftToken, Drafter } from './drafter.js'

/** Which n-grams to match, and how far back. */
export interface NgramDrafterInit {
  /** Longest suffix tried. Default 3. */
  maxN?: number
  /** Shortest suffix tried. Default 1. */
  minN?: number
  /** Only the last this many tokens are searched. Default 1024. */
  window?: number
}

/**
 * Prompt lookup: matches the longest suffix of the context (maxN tokens down to minN) that
 * also occurs earlier, the most recent occurrence first, and proposes the token that followed
 * it. Each further token repeats the lookup on the extended context. No model; q is one-hot;
 * confidence is the matched length over maxN.
 */
export class NgramDrafter implements Drafter {
  readonly #maxN: number
  readonly #minN: number
  readonly #window: number

  constructor ({ maxN = 3, minN = 1, window = 1024 }: NgramDrafterInit = {}) {
    if (!(Number.isInteger(minN) && minN >= 1 && Number.isInteger(maxN) && maxN >= minN)) {
      throw new RangeError(`Cannot match n-grams of ${minN}..${maxN} tokens: need integers 1 <= minN <= maxN`)
    }
    if (!(Number.isInteger(window) && window > maxN)) throw new RangeError(`Cannot search a window of ${window} tokens: it must be an integer > maxN (${maxN})`)
    this.#maxN = maxN
    this.#minN = minN
    this.#window = window
  }

  async propose ({ context, maxTokens, minConfidence = 0 }: DraftRequest): Promise<DraftToken[]> {
    const seq = [...context]
    const out: DraftToken[] = []
    while (out.length < maxTokens) {
      const found = this.#lookup(seq)
      if (found === undefined) break
      const draft = { token: found.token, q: undefined, confidence: found.n / this.#maxN }
      out.push(draft)
      seq.push(draft.token)
      if (draft.confidence < minConfidence) break
    }
    return out
  }

  /** The token after the most recent earlier occurrence of the longest matching suffix. */
  #lookup (seq: readonly number[]): { token: number, n: number } | undefined {
    const L = seq.length
    const from = Math.max(0, L - this.#window)
    for (let n = Math.min(this.#maxN, L - 1); n >= this.#minN; n--) {
      // an occurrence ending at e (exclusive) with e < L, so that seq[e] exists
      for (let e = L - 1; e - n >= from; e--) {
        let k = 0
        while (k < n && seq[e - n + k] === seq[L - n + k]) k++
        if (k === n) return { token: seq[e] as number, n }
      }
    }
    return undefined
  }
}
