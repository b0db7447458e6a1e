import { describe, expect, it } from 'vitest'
import { blockThroughputs, chooseBestSpan, type ServedSpan } from '../../node/block-selection.js'

describe('chooseBestSpan', () => {
  it('starts at block 0 in an empty swarm', () => {
    expect(chooseBestSpan(5, 2, [])).toEqual({ start: 0, end: 2 })
  })

  it('fills uncovered blocks first', () => {
    expect(chooseBestSpan(5, 2, [{ start: 0, end: 2, throughput: 10 }])).toEqual({ start: 2, end: 4 })
    expect(chooseBestSpan(5, 2, [{ start: 0, end: 2, throughput: 10 }, { start: 2, end: 4, throughput: 10 }])).toEqual({ start: 3, end: 5 })
  })

  it('servers added one after another end up covering every block', () => {
    const spans: ServedSpan[] = []
    for (let i = 0; i < 3; i++) spans.push({ ...chooseBestSpan(5, 2, spans), throughput: 10 })
    expect(blockThroughputs(5, spans).every(t => t > 0)).toBe(true)
  })

  it('reinforces the weakest blocks once all are covered', () => {
    const spans = [{ start: 0, end: 3, throughput: 10 }, { start: 3, end: 5, throughput: 1 }]
    expect(chooseBestSpan(5, 2, spans)).toEqual({ start: 3, end: 5 })
  })

  it('clamps a request larger than the model', () => {
    expect(chooseBestSpan(3, 8, [])).toEqual({ start: 0, end: 3 })
  })
})
