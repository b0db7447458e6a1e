import { describe, expect, it } from 'vitest'
import { fastestFinalist, sweepFinalists } from '../../scripts/lib/spec-measure.js'

describe('the speculation benchmark\'s finalists', () => {
  it('takes the fastest correct sweep points, fastest first', () => {
    const swept = [
      { point: 'k 8', tokensPerSecond: 47, correct: true },
      { point: 'k 16', tokensPerSecond: 51, correct: true },
      { point: 'k 32', tokensPerSecond: 60, correct: false }, // fast but wrong: never a finalist
      { point: 'k 24', tokensPerSecond: 52, correct: true }
    ]
    expect(sweepFinalists(swept, 2)).toEqual(['k 24', 'k 16'])
    expect(sweepFinalists(swept, 1)).toEqual(['k 24'])
    expect(sweepFinalists(swept.filter(s => !s.correct), 2)).toEqual([])
  })

  it('reports the finalist with the best median over the rounds, not the best single round', () => {
    // [round][finalist]: the sweep's winner (0) has one lucky round, the runner-up (1) is faster in two of three
    const rates = [[56, 54], [51, 55], [52, 54.5]]
    expect(fastestFinalist(rates)).toBe(1)
    expect(fastestFinalist([[50, 49], [51, 50], [49, 52]])).toBe(0) // medians 50 / 50: the tie goes to the sweep's winner
    expect(fastestFinalist([[40], [41]])).toBe(0)
  })
})
