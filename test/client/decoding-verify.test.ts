import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DraftGuess, type DraftModel, keyedCandidates, keyedRandom, type RandomSource, residualDistribution, SAMPLED_CANDIDATES, type Verdict, verifyCandidates, verifyToken } from '../../client/decoding/index.js'
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

/** `first` and the candidates the verifier tries after it at one position (seed 0). */
function candidatesAfter (q: Float64Array, first: number, position: number): number[] {
  return [first, ...keyedCandidates(q, first, 0, position)]
}

type CandidateVerifier = (p: Float64Array, q: Float64Array, candidates: readonly number[], random: RandomSource) => number

/** The real thing: verifyCandidates over the keyed candidates. */
const multiDraft: CandidateVerifier = (p, q, candidates, random) =>
  verifyCandidates(p, { token: candidates[0] as number, q }, taken => candidates[taken.length], random).token

/** Wrong on purpose: tests every candidate against p and q themselves, never against the residual. */
const againstP: CandidateVerifier = (p, q, candidates, random) => {
  for (const x of candidates) if (random.uniform() * (q[x] as number) < (p[x] as number)) return x
  return random.sample(residualDistribution(p, { token: candidates[0] as number, q }) ?? p)
}

/** Wrong on purpose: the draft as speculative sampling tests it, then the second candidate taken outright. */
const secondOutright: CandidateVerifier = (p, q, candidates, random) => {
  const first = verifyToken(p, { token: candidates[0] as number, q }, random, false)
  return first.accepted || candidates[1] === undefined ? first.token : candidates[1]
}

/** Counts of DRAWS tokens decided by `verify` over keyed candidates from q, seeded by position. */
function candidateHistogram (p: Float64Array, q: Float64Array, verify: CandidateVerifier, seed: number): { counts: Float64Array, byCandidate: number } {
  const counts = new Float64Array(p.length)
  let byCandidate = 0 // decided by a candidate after the draft
  for (let i = 0; i < DRAWS; i++) {
    const candidates = candidatesAfter(q, keyedRandom(seed, i, 'draft').sample(q), i)
    const token = verify(p, q, candidates, keyedRandom(seed, i, 'verify'))
    if (candidates.indexOf(token) > 0) byCandidate++
    counts[token] = (counts[token] as number) + 1
  }
  return { counts, byCandidate }
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

  it('verifying further candidates (without replacement) keeps p; testing them against p, or taking one outright, does not', () => {
    const flat = softmax(Float64Array.from(p, v => Math.log(Math.max(v, 1e-300)) / 3))
    // a draft sure of a token the target hardly wants: later candidates come from the rest of q
    const sureP = Float64Array.from([0.05, 0.4, 0.3, 0.15, 0.1, 0])
    const sureQ = Float64Array.from([0.7, 0.05, 0.05, 0.1, 0.05, 0.05])
    for (const [targetP, draftQ, seed] of [[p, q, 21], [p, flat, 22], [sureP, sureQ, 23]] as const) {
      const good = candidateHistogram(targetP, draftQ, multiDraft, seed)
      const test = chiSquare(good.counts, targetP)
      expect(test.rejected, `statistic ${test.statistic} vs critical ${test.critical}`).toBe(false)
      // the candidates after the draft decide a real share: that is what tree branches bet on
      expect(good.byCandidate).toBeGreaterThan(DRAWS / 20)
      for (const broken of [againstP, secondOutright]) {
        const bad = chiSquare(candidateHistogram(targetP, draftQ, broken, seed).counts, targetP)
        expect(bad.rejected, `${broken.name}: statistic ${bad.statistic} vs critical ${bad.critical}`).toBe(true)
      }
    }
  })

  it('keyed candidates: distinct, drawn from q without replacement, the same for the same key', () => {
    const counts = new Float64Array(q.length)
    for (let i = 0; i < DRAWS; i++) {
      const taken = candidatesAfter(q, keyedRandom(3, i, 'draft').sample(q), i)
      expect(taken).toHaveLength(SAMPLED_CANDIDATES)
      expect(new Set(taken).size).toBe(taken.length)
      for (const t of taken) expect(q[t]).toBeGreaterThan(0)
      expect(candidatesAfter(q, taken[0] as number, i)).toEqual(taken)
      // the second candidate is a draw from q without the first
      const second = taken[1] as number
      counts[second] = (counts[second] as number) + 1
    }
    // marginal of a draw after a draw without replacement: sum over x of q(x) q(y) / (1 - q(x))
    const expected = Float64Array.from(q, (qy, y) => {
      let sum = 0
      for (let x = 0; x < q.length; x++) if (x !== y) sum += (q[x] as number) * qy / (1 - (q[x] as number))
      return sum
    })
    const test = chiSquare(counts, expected)
    expect(test.rejected, `statistic ${test.statistic} vs critical ${test.critical}`).toBe(false)
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
