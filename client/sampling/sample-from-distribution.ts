import type { VocabRow } from './argmax.js'
import type { Rng } from './rng.js'

/**
 * Draws one index with probability proportional to `probs` (which need not sum exactly to 1).
 * Zero-probability entries are never drawn.
 *
 * probs (V,) -> index in [0, V)
 */
export function sampleFromDistribution (probs: VocabRow, rng: Rng): number {
  let total = 0
  let last = -1
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i] as number
    if (!(p >= 0)) throw new RangeError(`Cannot sample from a distribution with probability ${p} at index ${i}: it must be >= 0`)
    total += p
    if (p > 0) last = i
  }
  if (last < 0) throw new RangeError(`Cannot sample from a distribution of ${probs.length} entries: its mass is 0`)
  let u = rng.next() * total
  for (let i = 0; i < last; i++) {
    u -= probs[i] as number
    if (u < 0) return i
  }
  return last // also catches rounding that leaves u a hair above 0
}
