export interface StopConditionOptions {
  /** Generating one of these ends the sequence (stories260k: [2, 1]). */
  eosTokenIds?: Iterable<number>
  /** Stop once this many tokens were generated. Default: no limit. */
  maxNewTokens?: number
  /** Stop at the first occurrence of any of these in the generated text; the text is cut before it. */
  stopStrings?: readonly string[]
}

/** Why generation ended. */
export type StopReason = 'eos' | 'max-new-tokens' | 'stop-string'

/** The verdict after a token. */
export interface StopCheck {
  readonly stop: boolean
  readonly reason: StopReason | undefined
  /**
   * How much of the text may be shown now. Stopped: the final length (before the stop string, if
   * one ended it). Not stopped: the text minus a tail that could still grow into a stop string.
   */
  readonly textLength: number
}

/** Decides when generation ends: EOS ids, a token budget, stop strings. */
export class StopCondition {
  readonly #eos: ReadonlySet<number>
  readonly #maxNewTokens: number
  readonly #stopStrings: readonly string[]

  constructor ({ eosTokenIds = [], maxNewTokens = Infinity, stopStrings = [] }: StopConditionOptions = {}) {
    if (!(maxNewTokens === Infinity || (Number.isInteger(maxNewTokens) && maxNewTokens > 0))) {
      throw new RangeError(`Cannot stop after max_new_tokens ${maxNewTokens}: it must be a positive integer`)
    }
    const empty = stopStrings.findIndex(s => s === '')
    if (empty >= 0) throw new RangeError(`Cannot stop on stop string ${empty}: it is empty`)
    this.#eos = new Set(eosTokenIds)
    this.#maxNewTokens = maxNewTokens
    this.#stopStrings = stopStrings
  }

  /**
   * Checks the generated ids (prompt excluded) and their decoded text. A stop string wins over
   * EOS, EOS over the token budget.
   */
  check (generatedIds: readonly number[], text: string): StopCheck {
    const cut = this.#firstStopString(text)
    if (cut >= 0) return { stop: true, reason: 'stop-string', textLength: cut }
    const last = generatedIds[generatedIds.length - 1]
    if (last !== undefined && this.#eos.has(last)) return { stop: true, reason: 'eos', textLength: text.length }
    if (generatedIds.length >= this.#maxNewTokens) return { stop: true, reason: 'max-new-tokens', textLength: text.length }
    return { stop: false, reason: undefined, textLength: text.length - this.#pendingTail(text) }
  }

  /** Start of the earliest stop string in `text`, or -1. */
  #firstStopString (text: string): number {
    let first = -1
    for (const s of this.#stopStrings) {
      const at = text.indexOf(s)
      if (at >= 0 && (first < 0 || at < first)) first = at
    }
    return first
  }

  /** Length of the longest end of `text` that is a proper start of some stop string. */
  #pendingTail (text: string): number {
    let longest = 0
    for (const s of this.#stopStrings) {
      for (let n = Math.min(s.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(s.slice(0, n))) {
          longest = n
          break
        }
      }
    }
    return longest
  }
}
