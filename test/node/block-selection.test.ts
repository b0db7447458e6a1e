import { describe, expect, it } from 'vitest'
import { blockThroughputs, chooseBestSpan, chooseMove, type ServedSpan } from '../../node/block-selection.js'

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

describe('chooseMove', () => {
  const T = 10

  it('moves into the gap a server left, when the blocks it holds stay covered', () => {
    // [0,3) and a rebalancing [0,2); the [3,5) server has left
    const self = { start: 0, end: 2, throughput: T }
    expect(chooseMove(5, self, [{ start: 0, end: 3, throughput: T }], 1.25)).toEqual({ start: 3, end: 5 })
  })

  it('stays where moving would uncover the blocks only it holds', () => {
    const self = { start: 0, end: 2, throughput: T }
    expect(chooseMove(5, self, [{ start: 2, end: 3, throughput: T }], 1.25)).toBeUndefined()
  })

  it('stays on the window the swarm without it serves worst', () => {
    const self = { start: 3, end: 5, throughput: T }
    expect(chooseMove(5, self, [{ start: 0, end: 3, throughput: T }, { start: 3, end: 5, throughput: T }], 1.25)).toBeUndefined()
  })

  it('moves from doubly covered blocks to the weakest ones only for a gain of at least minGain', () => {
    // blocks 0-1 held twice, blocks 2-3 by one slow server: moving lifts the bottleneck from 4 to 10
    const self = { start: 0, end: 2, throughput: T }
    const others = [{ start: 0, end: 2, throughput: T }, { start: 2, end: 5, throughput: 4 }, { start: 4, end: 5, throughput: T }]
    expect(chooseMove(5, self, others, 1.25)).toEqual({ start: 2, end: 4 })
    expect(chooseMove(5, self, others, 3)).toBeUndefined()
  })

  it('does not move when the slowest block stays the slowest', () => {
    // blocks 2-4 are slow; two blocks moved there would leave block 4 at 4 either way
    const self = { start: 0, end: 2, throughput: T }
    expect(chooseMove(5, self, [{ start: 0, end: 2, throughput: T }, { start: 2, end: 5, throughput: 4 }], 1.01)).toBeUndefined()
    // with the slow block inside reach, it moves
    expect(chooseMove(5, self, [{ start: 0, end: 4, throughput: T }, { start: 4, end: 5, throughput: 2 }], 1.01)).toEqual({ start: 3, end: 5 })
  })

  it('rejects a minimum gain below 1', () => {
    expect(() => chooseMove(5, { start: 0, end: 2, throughput: T }, [], 0.5)).toThrow(RangeError)
  })
})

describe('rebalancing a whole swarm with chooseMove', () => {
  // a small seeded generator, so that a failure names its case
  const rng = (seed: number) => () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  const slowest = (n: number, spans: readonly ServedSpan[]): number => Math.min(...blockThroughputs(n, spans))

  it('settles in a few moves from any start, each move lifting the slowest block', () => {
    let swarmsThatMoved = 0
    for (let seed = 1; seed <= 200; seed++) {
      const random = rng(seed)
      const blocks = 4 + Math.floor(random() * 12)
      const spans: ServedSpan[] = Array.from({ length: 2 + Math.floor(random() * 6) }, () => {
        const length = 1 + Math.floor(random() * blocks / 2)
        const start = Math.floor(random() * (blocks - length + 1))
        return { start, end: start + length, throughput: 1 + Math.floor(random() * 20) }
      })
      // rounds in which every server looks at the swarm once, in a random order, until one moves none
      let moves = 0
      for (let moved = true; moved;) {
        moved = false
        const order = spans.map((_, i) => i).sort(() => random() - 0.5)
        for (const i of order) {
          const self = spans[i] as ServedSpan
          const target = chooseMove(blocks, self, spans.filter((_, j) => j !== i), 1.25)
          if (target === undefined) continue
          const before = slowest(blocks, spans)
          spans[i] = { ...target, throughput: self.throughput }
          expect(slowest(blocks, spans), `seed ${seed}`).toBeGreaterThanOrEqual(before * 1.25)
          moved = true
          expect(++moves, `seed ${seed}`).toBeLessThan(50)
        }
      }
      if (moves > 0) swarmsThatMoved++
    }
    console.log(`[rebalancing] ${swarmsThatMoved} of 200 random swarms moved before settling`)
    expect(swarmsThatMoved).toBeGreaterThan(20)
  })
})
