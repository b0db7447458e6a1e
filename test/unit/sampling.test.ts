import { describe, expect, it } from 'vitest'
import { argmax, createRng, processLogits, sampleFromDistribution, Sampler, StopCondition } from '../../client/sampling/index.js'

/** softmax written out: exp(x_i) / sum_j exp(x_j), with -Infinity -> 0. */
function softmaxByHand (xs: readonly number[]): number[] {
  const exps = xs.map(x => Math.exp(x))
  const sum = exps.reduce((a, b) => a + b, 0)
  return exps.map(e => e / sum)
}

function randomLogits (V: number, seed: number, scale = 4): Float32Array {
  const rng = createRng(seed)
  return Float32Array.from({ length: V }, () => (rng.next() - 0.5) * 2 * scale)
}

/** Top-p by the book: sort ascending (ties: higher index first), drop while the running mass stays <= 1 - p, keep the largest. */
function topPByHand (probs: readonly number[], topP: number): number[] {
  const order = probs.map((_, i) => i).sort((a, b) => (probs[a] as number) - (probs[b] as number) || b - a)
  const kept = probs.slice()
  let cumulative = 0
  for (const i of order.slice(0, -1)) {
    cumulative += probs[i] as number
    if (cumulative <= 1 - topP) kept[i] = 0
  }
  const sum = kept.reduce((a, b) => a + b, 0)
  return kept.map(p => p / sum)
}

/** Pearson's chi-square statistic of observed counts against expected probabilities (zero-probability cells skipped). */
function chiSquare (counts: readonly number[], probs: ArrayLike<number>, draws: number): number {
  let stat = 0
  for (let i = 0; i < counts.length; i++) {
    const expected = (probs[i] as number) * draws
    if (expected > 0) stat += ((counts[i] as number) - expected) ** 2 / expected
  }
  return stat
}

function expectCloseRows (actual: ArrayLike<number>, expected: readonly number[]): void {
  expect(actual.length).toBe(expected.length)
  for (let i = 0; i < expected.length; i++) expect(actual[i]).toBeCloseTo(expected[i] as number, 12)
}

describe('argmax', () => {
  it('returns the first index of the largest value', () => {
    expect(argmax(Float32Array.of(1, 5, 3, 5))).toBe(1)
    expect(argmax([-3, -2, -1])).toBe(2)
    expect(argmax([NaN, 0, -1])).toBe(1)
    expect(() => argmax([])).toThrow(RangeError)
  })
})

describe('createRng', () => {
  it('gives the same sequence for the same seed and another one for another seed', () => {
    const draw = (seed: number): number[] => { const r = createRng(seed); return Array.from({ length: 100 }, () => r.next()) }
    expect(draw(42)).toEqual(draw(42))
    expect(draw(42)).not.toEqual(draw(43))
    expect(draw(1)).not.toEqual(draw(1 + 2 ** 32)) // the high bits count
  })

  it('draws uniform floats in [0, 1)', () => {
    const rng = createRng(3)
    const bins = new Array(10).fill(0)
    const N = 100_000
    let outside = 0
    for (let i = 0; i < N; i++) {
      const u = rng.next()
      if (!(u >= 0 && u < 1)) outside++
      else bins[Math.floor(u * 10)]++
    }
    expect(outside).toBe(0)
    expect(chiSquare(bins, new Array(10).fill(0.1), N)).toBeLessThan(27.88) // df 9, p = 0.001
  })

  it('refuses a seed that is not a safe integer', () => {
    expect(() => createRng(1.5)).toThrow(RangeError)
    expect(() => createRng(2 ** 60)).toThrow(RangeError)
  })
})

describe('processLogits', () => {
  const logits = [1, 3, 2, 0]

  it('is the softmax of the logits with no options', () => {
    expectCloseRows(processLogits(Float32Array.from(logits)), softmaxByHand(logits))
  })

  it('divides the logits by the temperature', () => {
    expectCloseRows(processLogits(logits, { temperature: 0.5 }), softmaxByHand(logits.map(x => x / 0.5)))
    expectCloseRows(processLogits(logits, { temperature: 2 }), softmaxByHand(logits.map(x => x / 2)))
  })

  it('keeps the k largest under top-k, ties with the k-th included', () => {
    expectCloseRows(processLogits(logits, { topK: 2 }), softmaxByHand([-Infinity, 3, 2, -Infinity]))
    expectCloseRows(processLogits([3, 2, 2, 1], { topK: 2 }), softmaxByHand([3, 2, 2, -Infinity]))
    expectCloseRows(processLogits(logits, { topK: 10 }), softmaxByHand(logits))
  })

  it('keeps the smallest most-likely set whose mass exceeds p under top-p', () => {
    const probs = [0.5, 0.3, 0.15, 0.05]
    const asLogits = probs.map(Math.log)
    // ascending 0.05, 0.15, 0.3: running mass 0.05 and 0.2 are <= 1 - 0.75, 0.5 is not -> keep 0.5 and 0.3
    expectCloseRows(processLogits(asLogits, { topP: 0.75 }), [0.5 / 0.8, 0.3 / 0.8, 0, 0])
    expectCloseRows(processLogits(asLogits, { topP: 0.01 }), [1, 0, 0, 0]) // the most likely token always stays
    expectCloseRows(processLogits(asLogits, { topP: 1 }), probs)
  })

  it('matches a full-sort top-p on large random rows', () => {
    for (const [seed, topP] of [[1, 0.9], [2, 0.5], [3, 0.99], [4, 0.1]] as const) {
      const row = randomLogits(3000, seed, 6)
      const full = Array.from(processLogits(row))
      expectCloseRows(processLogits(row, { topP }), topPByHand(full, topP))
    }
  })

  it('matches a full-sort top-p on small rows full of ties', () => {
    const rng = createRng(21)
    for (let n = 0; n < 2000; n++) {
      const V = 1 + Math.floor(rng.next() * 40)
      const row = Array.from({ length: V }, () => Math.round((rng.next() - 0.5) * 6))
      const topP = 0.05 + rng.next() * 0.9
      expectCloseRows(processLogits(row, { topP }), topPByHand(softmaxByHand(row), topP))
    }
  })

  it('divides positive and multiplies negative logits of seen tokens by the repetition penalty', () => {
    const row = [2, -1, 0.5, 3]
    const previous = [0, 1, 1]
    expectCloseRows(processLogits(row, { repetitionPenalty: 2, previousTokens: previous }), softmaxByHand([2 / 2, -1 * 2, 0.5, 3]))
  })

  it('applies penalty, temperature, top-k, then top-p', () => {
    const row = [4, 1, 3, 2.5, -2]
    const penalized = [4 / 1.5, 1, 3, 2.5, -2] // token 0 seen
    const tempered = penalized.map(x => x / 0.7)
    const topK = tempered.map((x, i) => [0, 2, 3].includes(i) ? x : -Infinity) // three largest: 3, 4/1.5, 2.5
    const expected = topPByHand(softmaxByHand(topK), 0.8)
    expectCloseRows(processLogits(row, { repetitionPenalty: 1.5, previousTokens: [0], temperature: 0.7, topK: 3, topP: 0.8 }), expected)
  })

  it('gives a one-hot row at the penalized argmax for temperature 0', () => {
    expectCloseRows(processLogits([3, 2.9], { temperature: 0 }), [1, 0])
    expectCloseRows(processLogits([3, 2.9], { temperature: 0, repetitionPenalty: 2, previousTokens: [0] }), [0, 1])
  })

  it('adds logit_bias after the penalty, before the temperature; greedy and sampling alike', () => {
    const row = [2, -1, 0.5, 3]
    const logitBias = new Map([[3, -100], [1, 2.5], [9, 50]]) // token 9 is past the vocabulary: nothing
    expectCloseRows(processLogits(row, { logitBias, repetitionPenalty: 2, previousTokens: [0], temperature: 0.5 }), softmaxByHand([2 / 2 / 0.5, 1.5 / 0.5, 0.5 / 0.5, -97 / 0.5]))
    expect(new Sampler({ temperature: 0 }).next(row)).toBe(3)
    expect(new Sampler({ temperature: 0, logitBias }).next(row)).toBe(0)
    expect(new Sampler({ temperature: 0, logitBias: new Map([[2, 100]]) }).next(row)).toBe(2)
    // a banned token is never drawn
    const sampler = new Sampler({ temperature: 1, seed: 3, logitBias: new Map([[3, -100]]) })
    for (let i = 0; i < 200; i++) expect(sampler.next(row)).not.toBe(3)
    expect(() => processLogits(row, { logitBias: new Map([[-1, 1]]) })).toThrow(RangeError)
    expect(() => processLogits(row, { logitBias: new Map([[1, Infinity]]) })).toThrow(RangeError)
  })

  it('presence and frequency penalties count only the generated tokens, after the repetition penalty, before logit_bias', () => {
    const row = [2, -1, 0.5, 3]
    const previousTokens = [3, 3, 1, 3, 0, 3] // a prompt of 3, 3, 1; generated 3, 0, 3
    const opts = { previousTokens, generatedFrom: 3, presencePenalty: 0.5, frequencyPenalty: 0.25, repetitionPenalty: 2, logitBias: new Map([[1, 1]]) }
    // repetition (every seen token: 0, 1, 3), then token 3: -0.5 - 2 * 0.25, token 0: -0.5 - 0.25, then the bias
    const scores = [2 / 2 - 0.75, -1 * 2 + 1, 0.5, 3 / 2 - 1]
    expectCloseRows(processLogits(row, { ...opts, temperature: 0.5 }), softmaxByHand(scores.map(x => x / 0.5)))
    expect(new Sampler({ temperature: 0, presencePenalty: 2, frequencyPenalty: 1, generatedFrom: 3 }).next(row, previousTokens)).toBe(2) // 3 falls to -1, 0 to -1
    expect(new Sampler({ temperature: 0, presencePenalty: 2, generatedFrom: 6 }).next(row, previousTokens)).toBe(3) // nothing generated yet
    expect(new Sampler({ temperature: 0, frequencyPenalty: -1, generatedFrom: 3 }).next([2, -1, 0.5, 1.5], previousTokens)).toBe(3) // negative: repeat more
    expect(() => processLogits(row, { presencePenalty: NaN })).toThrow(RangeError)
    expect(() => processLogits(row, { frequencyPenalty: Infinity })).toThrow(RangeError)
    expect(() => processLogits(row, { generatedFrom: -1 })).toThrow(RangeError)
  })

  it('refuses out-of-range options', () => {
    expect(() => processLogits(logits, { temperature: -1 })).toThrow(RangeError)
    expect(() => processLogits(logits, { topK: 1.5 })).toThrow(RangeError)
    expect(() => processLogits(logits, { topP: 0 })).toThrow(RangeError)
    expect(() => processLogits(logits, { topP: 1.2 })).toThrow(RangeError)
    expect(() => processLogits(logits, { repetitionPenalty: 0 })).toThrow(RangeError)
  })
})

describe('sampleFromDistribution', () => {
  it('draws each index as often as its probability says', () => {
    const probs = Float64Array.of(0.1, 0.2, 0.3, 0.4, 0)
    const rng = createRng(5)
    const counts = new Array(probs.length).fill(0)
    const N = 100_000
    for (let i = 0; i < N; i++) counts[sampleFromDistribution(probs, rng)]++
    expect(counts[4]).toBe(0)
    expect(chiSquare(counts, probs, N)).toBeLessThan(16.27) // df 3, p = 0.001
  })

  it('accepts unnormalized weights and never picks a zero entry', () => {
    const rng = createRng(9)
    for (let i = 0; i < 1000; i++) expect(sampleFromDistribution([0, 2, 0, 6, 0], rng)).toBeOneOf([1, 3])
    expect(() => sampleFromDistribution([0, 0], rng)).toThrow(RangeError)
    expect(() => sampleFromDistribution([0.5, -0.1], rng)).toThrow(RangeError)
  })
})

describe('Sampler', () => {
  it('is argmax at temperature 0, with a one-hot distribution', () => {
    const sampler = new Sampler({ temperature: 0 })
    expect(sampler.greedy).toBe(true)
    for (let seed = 0; seed < 20; seed++) {
      const row = randomLogits(512, seed)
      expect(sampler.next(row)).toBe(argmax(row))
      expect(sampler.distribution(row)[argmax(row)]).toBe(1)
    }
  })

  it('repeats its samples for the same seed and not for another', () => {
    const run = (seed: number): number[] => {
      const sampler = new Sampler({ temperature: 1, seed })
      return Array.from({ length: 200 }, (_, i) => sampler.next(randomLogits(64, i, 1)))
    }
    expect(run(123)).toEqual(run(123))
    expect(run(123)).not.toEqual(run(124))
  })

  it('draws from exactly the distribution it reports', () => {
    const sampler = new Sampler({ temperature: 0.8, topK: 5, topP: 0.9, repetitionPenalty: 1.3, seed: 17 })
    const row = randomLogits(32, 77, 2)
    const previous = [3, 4, 5]
    const probs = sampler.distribution(row, previous)
    expectCloseRows(probs, Array.from(processLogits(row, { temperature: 0.8, topK: 5, topP: 0.9, repetitionPenalty: 1.3, previousTokens: previous })))
    const counts = new Array(row.length).fill(0)
    const N = 50_000
    for (let i = 0; i < N; i++) counts[sampler.next(row, previous)]++
    for (let i = 0; i < row.length; i++) if (probs[i] === 0) expect(counts[i]).toBe(0)
    const kept = probs.filter(p => p > 0).length
    expect(chiSquare(counts, probs, N)).toBeLessThan([0, 10.83, 13.82, 16.27, 18.47, 20.52][kept - 1] as number) // p = 0.001
  })

  it('checks its options when built', () => {
    expect(() => new Sampler({ topP: 2 })).toThrow(RangeError)
    expect(() => new Sampler({ seed: 0.5 })).toThrow(RangeError)
  })
})

describe('StopCondition', () => {
  it('stops on any EOS id', () => {
    const stop = new StopCondition({ eosTokenIds: [2, 1] })
    expect(stop.check([5, 6], 'ab')).toEqual({ stop: false, reason: undefined, textLength: 2 })
    expect(stop.check([5, 1], 'ab')).toEqual({ stop: true, reason: 'eos', textLength: 2 })
    expect(stop.check([5, 2], 'ab').reason).toBe('eos')
  })

  it('stops after max new tokens', () => {
    const stop = new StopCondition({ maxNewTokens: 3 })
    expect(stop.check([1, 1], 'xx').stop).toBe(false)
    expect(stop.check([7, 8, 9], 'xyz')).toEqual({ stop: true, reason: 'max-new-tokens', textLength: 3 })
  })

  it('cuts the text before the earliest stop string', () => {
    const stop = new StopCondition({ stopStrings: ['The end', '\n\n'] })
    expect(stop.check([1], 'Once.\n\nThe end')).toEqual({ stop: true, reason: 'stop-string', textLength: 5 })
    expect(stop.check([1], 'Once. The end!')).toEqual({ stop: true, reason: 'stop-string', textLength: 6 })
  })

  it('holds back a tail that may still become a stop string', () => {
    const stop = new StopCondition({ stopStrings: ['The end'] })
    expect(stop.check([1], 'Once. The e').textLength).toBe(6)
    expect(stop.check([1], 'Once. Then').textLength).toBe(10)
    expect(stop.check([1], 'Once. T').textLength).toBe(6)
  })

  it('prefers a stop string over EOS over the budget', () => {
    const stop = new StopCondition({ eosTokenIds: [2], maxNewTokens: 2, stopStrings: ['!'] })
    expect(stop.check([5, 2], 'hi!').reason).toBe('stop-string')
    expect(stop.check([5, 2], 'hi').reason).toBe('eos')
    expect(stop.check([5, 6], 'hi').reason).toBe('max-new-tokens')
  })

  it('refuses a zero budget or an empty stop string', () => {
    expect(() => new StopCondition({ maxNewTokens: 0 })).toThrow(RangeError)
    expect(() => new StopCondition({ stopStrings: ['a', ''] })).toThrow(RangeError)
  })
})
