import { createRng, sampleFromDistribution, type VocabRow } from '../sampling/index.js'

/** A seeded source of randomness, as the verifier uses it (a Sampler is one). */
export interface RandomSource {
  /** A uniform float in [0, 1). */
  uniform (): number
  /** Draws an index with probability proportional to `probs` (V,). */
  sample (probs: VocabRow): number
}

/** What a position's randomness is for: separate streams never share draws. */
export type RandomPurpose = 'draft' | 'verify'

const PURPOSE_SALT: Record<RandomPurpose, number> = { draft: 0x5bd1e995, verify: 0x27d4eb2f }

/**
 * The random stream of one (seed, position, purpose, index), independent of every other key
 * and of when or how often it is asked for. `index` numbers independent draws of one position
 * and purpose (the candidates of multi-draft verification). Keying by position makes a seeded speculative run
 * reproducible however its runs were laid out, pipelined or not, fast or slow: the token
 * decided at a position uses only that position's draws.
 */
export function keyedRandom (seed: number, position: number, purpose: RandomPurpose, index = 0): RandomSource {
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`Cannot key randomness by position ${position}: it must be a safe integer >= 0`)
  if (!(Number.isInteger(index) && index >= 0 && index < 0x1_0000_0000)) throw new RangeError(`Cannot key randomness by index ${index}: it must be an integer in [0, 2^32)`)
  const lo = seed >>> 0
  const hi = Math.floor(seed / 0x1_0000_0000) >>> 0
  // mix32(0) is 0, so index 0 keeps the streams that had no index
  const a = mix32(lo ^ mix32(position ^ PURPOSE_SALT[purpose]) ^ mix32(index))
  const b = mix32(hi ^ mix32(a + 0x9e3779b9))
  const rng = createRng((b & 0x1fffff) * 0x1_0000_0000 + a) // 53-bit safe integer
  return {
    uniform: () => rng.next(),
    sample: (probs) => sampleFromDistribution(probs, rng)
  }
}

/** murmur3's 32-bit finalizer: a bijective avalanche of one 32-bit word. */
function mix32 (x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}
