import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DraftGuess, type DraftModel, keyedRandom, type RandomSource, residualDistribution, type Verdict, verifyToken } from '../../client/decoding/index.js'
import { Sampler, softmax } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { chiSquare } from '../helpers/decoding-chi-square.js'
import { loadStories } from '../helpers/decoding-fixtures.js'

const DRAWS = 4000

/** Wrong on purpose: keeps every draft, so its output follows q, not p. */
function alwaysAccept (_p: Float64Array, draft: DraftGuess | undefined): Verdict {
  return draft === undefined ? { token: 0, accepted: false } : { token: draft.token, accepted: true }
}

/** Wrong on purpose: the right acceptance test, but a rejection redraws from p instead of max(0, p - q). */
function resampleFromP (p: Float64Array, draft: DraftGuess | undefined, random: RandomSource): Verdict {
  if (draft?.q === undefined) throw new Error('needs a draft with q')
  if (random.uniform() * (draft.q[draft.token] as number) < (p[draft.token] as number)) return { token: draft.token, accepted: true }
  return { token: random.sample(p), accepted: false }
}

/** Counts of DRAWS tokens: each draft x ~ q, then verified against p, all seeded by position. */
function histogram (p: Float64Array, q: Float64Array, verify: typeof verifyToken, seed: number): Float64Array {
  const counts = new Float64Array(p.length)
  for (let i = 0; i < DRAWS; i++) {
    const token = keyedRandom(seed, i, 'draft').sample(q)
    const verdict = verify(p, { token, q }, keyedRandom(seed, i, 'verify'), false)
    counts[verdict.token] = (counts[verdict.token] as number) + 1
  }
  return counts
}

describe('verifyToken', () => {
  it('greedy: the target argmax; the draft is accepted only when it equals it', () => {
    const p = Float64Array.from([0.1, 0.7, 0.2])
    const random = keyedRandom(1, 0, 'verify')
    expect(verifyToken(p, { token: 1, q: undefined }, random, true)).toEqual({ token: 1, accepted: true })
    expect(verifyToken(p, { token: 2, q: undefined }, random, true)).toEqual({ token: 1, accepted: false })
    expect(verifyToken(p, undefined, random, true)).toEqual({ token: 1, accepted: false })
  })

  it('a draft with p(x) >= q(x) is always accepted; one with p(x) = 0 never is', () => {
    const p = Float64Array.from([0, 0.5, 0.5])
    const q = Float64Array.from([0.5, 0.25, 0.25])
    for (let i = 0; i < 50; i++) {
      expect(verifyToken(p, { token: 1, q }, keyedRandom(7, i, 'verify'), false)).toEqual({ token: 1, accepted: true })
      const rejected = verifyToken(p, { token: 0, q }, keyedRandom(7, i, 'verify'), false)
      expect(rejected.accepted).toBe(false)
      expect(rejected.token).not.toBe(0)
    }
  })

  it('the residual is max(0, p - q), one-hot q included', () => {
    const p = Float64Array.from([0.2, 0.5, 0.3])
    expect([...residualDistribution(p, { token: 0, q: Float64Array.from([0.6, 0.2, 0.2]) }) ?? []].map(v => +v.toFixed(6))).toEqual([0, 0.3, 0.1])
    expect([...residualDistribution(p, { token: 1, q: undefined }) ?? []]).toEqual([0.2, 0, 0.3])
    expect(residualDistribution(p, { token: 1, q: p })).toBeUndefined()
  })

  it('the same seed and position give the same draws; others differ', () => {
    const a = keyedRandom(42, 3, 'verify')
    const b = keyedRandom(42, 3, 'verify')
    const draws = [a.uniform(), a.uniform()]
    expect([b.uniform(), b.uniform()]).toEqual(draws)
    expect(keyedRandom(42, 4, 'verify').uniform()).not.toBe(draws[0])
    expect(keyedRandom(43, 3, 'verify').uniform()).not.toBe(draws[0])
    expect(keyedRandom(42, 3, 'draft').uniform()).not.toBe(draws[0])
  })
})

describe('speculative sampling keeps the target distribution (chi-square, 4000 draws)', () => {
  let model: LocalModel
  let draft: DraftModel
  let p: Float64Array
  let q: Float64Array
  // "The little dog": here the draft disagrees with the target (total variation ~0.57).
  const context = [1, 291, 376, 400, 428]
  beforeAll(async () => {
    ({ model, draft } = await loadStories())
    const sampler = new Sampler({ temperature: 1 })
    p = sampler.distribution((await model.newSession().forward(context)).at(-1) as Float32Array, context)
    q = sampler.distribution((await draft.newSession().forward(context)).at(-1) as Float32Array, context)
  })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  it('with stories260k-draft as q: verified tokens fit p; broken verifiers (always accept, redraw from p) do not', () => {
    const good = chiSquare(histogram(p, q, verifyToken, 11), p)
    expect(good.df).toBeGreaterThan(10)
    expect(good.rejected, `statistic ${good.statistic} vs critical ${good.critical}`).toBe(false)
    for (const broken of [alwaysAccept, resampleFromP]) {
      const test = chiSquare(histogram(p, q, broken, 11), p)
      expect(test.rejected, `${broken.name}: statistic ${test.statistic} vs critical ${test.critical}`).toBe(true)
    }
  })

  it('with a deliberately bad draft (flattened target logits at temperature 3): verified tokens still fit p', () => {
    const flat = softmax(Float64Array.from(p, v => Math.log(Math.max(v, 1e-300)) / 3))
    const good = chiSquare(histogram(p, flat, verifyToken, 12), p)
    expect(good.rejected, `statistic ${good.statistic} vs critical ${good.critical}`).toBe(false)
    expect(chiSquare(histogram(p, flat, alwaysAccept, 12), p).rejected).toBe(true)
    expect(chiSquare(histogram(p, flat, resampleFromP, 12), p).rejected).toBe(true)
  })

  it('accepts about sum(min(p, q)) of the drafts, as theory says', () => {
    let overlap = 0
    for (let i = 0; i < p.length; i++) overlap += Math.min(p[i] as number, q[i] as number)
    let accepted = 0
    for (let i = 0; i < DRAWS; i++) {
      const token = keyedRandom(5, i, 'draft').sample(q)
      if (verifyToken(p, { token, q }, keyedRandom(5, i, 'verify'), false).accepted) accepted++
    }
    expect(Math.abs(accepted / DRAWS - overlap)).toBeLessThan(4 * Math.sqrt(overlap * (1 - overlap) / DRAWS))
  })
})
