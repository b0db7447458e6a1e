import { describe, expect, it } from 'vitest'
import { planCoveredRoute, ROUTE_JITTER } from '../../client/swarm/route-hops.js'
import { ServerDirectory, type KnownServer } from '../../client/swarm/server-directory.js'
import type { ServerInfo } from '../../protocol/server-info.js'
import { knownServer } from '../helpers/known-server.js'

/** A server holding all 5 blocks. */
function known (peerId: string, extra: Partial<ServerInfo> = {}): KnownServer {
  return knownServer(peerId, 0, 5, extra)
}

/** Which server each of `n` route plans starts with, counted. */
async function firstHops (directory: ServerDirectory, n: number, routeJitter?: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const route = await planCoveredRoute({ directory, rediscover: async () => {}, ...(routeJitter !== undefined ? { routeJitter } : {}) }, 0, 5)
    const id = route[0]?.peerId as string
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  return counts
}

describe('route choice across clients', () => {
  it('clients that see the same two equal servers spread over both (each plan draws its own jitter)', async () => {
    expect(ROUTE_JITTER).toBeGreaterThan(0)
    const directory = new ServerDirectory()
    directory.update([known('a'), known('b')])
    // every plan is a fresh client's first: no sessions of its own anywhere yet
    const spread = await firstHops(directory, 200)
    // 50/50 by construction; fewer than 40 of 200 has a probability below 1e-18
    expect(spread.get('a')).toBeGreaterThan(40)
    expect(spread.get('b')).toBeGreaterThan(40)
    // without jitter every one of them takes the first
    expect(await firstHops(directory, 20, 0)).toEqual(new Map([['a', 20]]))
  })

  it('a server clearly slower than another is not chosen for the jitter', async () => {
    const directory = new ServerDirectory()
    // 5 blocks at 100 blocks/s against 80: 50 ms against 62.5 ms of compute, far beyond 10%
    directory.update([known('fast'), known('slow', { throughput: { decodeTokensPerSec: 80, prefillTokensPerSec: 80 } })])
    expect(await firstHops(directory, 100)).toEqual(new Map([['fast', 100]]))
  })
})
