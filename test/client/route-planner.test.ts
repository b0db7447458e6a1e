import { describe, expect, it } from 'vitest'
import { NoRouteError, planRoute, uncoveredBlocks, type ServerCandidate } from '../../client/routing/route-planner.js'

const server = (peerId: string, start: number, end: number, extra: Partial<ServerCandidate> = {}): ServerCandidate =>
  ({ peerId, start, end, rttMs: 1, blocksPerSecond: 1000, hasCacheRoom: true, ...extra })

describe('planRoute', () => {
  it('chains disjoint spans in order', () => {
    const route = planRoute([server('c', 4, 5), server('a', 0, 2), server('b', 2, 4)], 0, 5)
    expect(route).toEqual([{ peerId: 'a', start: 0, end: 2 }, { peerId: 'b', start: 2, end: 4 }, { peerId: 'c', start: 4, end: 5 }])
  })

  it('prefers one server over two hops when both cover', () => {
    const route = planRoute([server('a', 0, 3), server('b', 3, 5), server('big', 0, 5)], 0, 5)
    expect(route).toEqual([{ peerId: 'big', start: 0, end: 5 }])
  })

  it('uses a sub-span of an overlapping server', () => {
    const route = planRoute([server('a', 0, 2), server('b', 1, 4, { blocksPerSecond: 100 }), server('c', 4, 5)], 0, 5)
    expect(route).toEqual([{ peerId: 'a', start: 0, end: 2 }, { peerId: 'b', start: 2, end: 4 }, { peerId: 'c', start: 4, end: 5 }])
  })

  it('avoids a slow server when a faster path exists', () => {
    const route = planRoute([server('slow', 0, 4, { blocksPerSecond: 1 }), server('a', 0, 2), server('b', 2, 4)], 0, 4)
    expect(route.map(h => h.peerId)).toEqual(['a', 'b'])
  })

  it('shares clients between equal servers: a hop\'s compute counts once more per open session', () => {
    // 2 blocks at 1000 blocks/s: 2 ms of compute alone, 6 ms with two sessions taking turns
    expect(planRoute([server('busy', 0, 2, { openSessions: 2 }), server('idle', 0, 2)], 0, 2)[0]?.peerId).toBe('idle')
    expect(planRoute([server('busy', 0, 2, { openSessions: 2 }), server('idle', 0, 2, { rttMs: 5.5 })], 0, 2)[0]?.peerId).toBe('busy')
    // a server ten times faster stays the better choice with a few sessions open
    expect(planRoute([server('fast', 0, 2, { openSessions: 3, blocksPerSecond: 10_000 }), server('slow', 0, 2)], 0, 2)[0]?.peerId).toBe('fast')
  })

  it('uses a full server only when nothing else covers', () => {
    expect(planRoute([server('full', 0, 2, { hasCacheRoom: false }), server('ok', 0, 2, { rttMs: 100 })], 0, 2)[0]?.peerId).toBe('ok')
    expect(planRoute([server('full', 0, 2, { hasCacheRoom: false })], 0, 2)[0]?.peerId).toBe('full')
  })

  it('cuts a server with several blocks per ORT session only at its session boundaries', () => {
    const route = planRoute([server('a', 0, 6, { graphBlocks: 3, blocksPerSecond: 100 }), server('b', 2, 6)], 0, 6)
    // a[0,2) + b[2,6) would be cheapest, but a cannot stop at block 2
    expect(route).toEqual([{ peerId: 'a', start: 0, end: 3 }, { peerId: 'b', start: 3, end: 6 }])
    expect(() => planRoute([server('a', 0, 6, { graphBlocks: 4 })], 2, 6)).toThrow(NoRouteError)
    expect(planRoute([server('a', 0, 6, { graphBlocks: 4 })], 4, 6)).toEqual([{ peerId: 'a', start: 4, end: 6 }])
  })

  it('with jitter, spreads plans over near-equal servers and keeps a clearly better one', () => {
    const random = seeded(7)
    const picks = (servers: ServerCandidate[]): Map<string, number> => {
      const counts = new Map<string, number>()
      for (let i = 0; i < 400; i++) {
        const id = planRoute(servers, 0, 2, { jitter: 0.1, random })[0]?.peerId as string
        counts.set(id, (counts.get(id) ?? 0) + 1)
      }
      return counts
    }
    // equal servers: each about half the plans (without jitter, always the first)
    const even = picks([server('a', 0, 2), server('b', 0, 2)])
    expect(even.get('a')).toBeGreaterThan(140)
    expect(even.get('b')).toBeGreaterThan(140)
    expect(planRoute([server('a', 0, 2), server('b', 0, 2)], 0, 2)[0]?.peerId).toBe('a')
    // 2.5% apart: both still used, the cheaper one more
    const near = picks([server('a', 0, 2), server('b', 0, 2, { rttMs: 1.1 })])
    expect(near.get('b')).toBeGreaterThan(40)
    expect(near.get('a')).toBeGreaterThan(near.get('b') as number)
    // a hop 19% more expensive is never chosen
    expect(picks([server('a', 0, 2), server('b', 0, 2, { rttMs: 1.75 })]).get('b')).toBeUndefined()
  })

  it('plans a part of the model (failover of a broken span)', () => {
    expect(planRoute([server('a', 0, 5)], 2, 4)).toEqual([{ peerId: 'a', start: 2, end: 4 }])
  })

  it('names the uncovered blocks when there is no route', () => {
    const servers = [server('a', 0, 2), server('b', 3, 5)]
    expect(() => planRoute(servers, 0, 5)).toThrow(NoRouteError)
    expect(() => planRoute(servers, 0, 5)).toThrow(/block 2/)
    expect(uncoveredBlocks(servers, 0, 6)).toEqual([2, 5])
  })
})

/** A deterministic generator of numbers in [0, 1) (an LCG), so the counts above do not vary by run. */
function seeded (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 2 ** 32
  }
}
