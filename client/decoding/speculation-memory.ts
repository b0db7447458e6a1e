import type { DecodeMode } from './decode-stats.js'
import type { Drafter } from './drafter.js'
import type { LearnedSpeculation } from './speculation-controller.js'

/**
 * What speculation learned in earlier decodes, by drafter, mode and greedy or sampled: a new
 * decode starts from it instead of from priors. A cold controller assumes acceptance 0.7 and
 * speculates shallow until its first round trip is timed, which is a large share of a short
 * chat turn. LanguageModel keeps one for all its sessions.
 */
export class SpeculationMemory {
  readonly #byDrafter = new WeakMap<Drafter, Map<string, LearnedSpeculation>>()

  recall (drafter: Drafter, mode: DecodeMode, greedy: boolean): LearnedSpeculation | undefined {
    return this.#byDrafter.get(drafter)?.get(key(mode, greedy))
  }

  remember (drafter: Drafter, mode: DecodeMode, greedy: boolean, learned: LearnedSpeculation): void {
    let byMode = this.#byDrafter.get(drafter)
    if (byMode === undefined) this.#byDrafter.set(drafter, byMode = new Map())
    byMode.set(key(mode, greedy), learned)
  }
}

function key (mode: DecodeMode, greedy: boolean): string {
  return `${mode}/${greedy ? 'greedy' : 'sampled'}`
}
