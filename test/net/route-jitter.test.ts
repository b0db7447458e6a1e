/**
 * LanguageModel.swarm's routeJitter reaches routing: two servers hold every block, the same
 * announced speed; each new session plans a route with no session of the client's open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'

/** The server each of `n` sessions, opened and closed one after another, was routed to. */
async function firstServers (model: LanguageModel, n: number): Promise<Set<string>> {
  const chosen = new Set<string>()
  for (let i = 0; i < n; i++) {
    const session = await model.session({ maxTokens: 16 })
    chosen.add((session.target as SwarmTarget).route[0]?.peerId as string)
    await session.close()
  }
  return chosen
}

describe('routeJitter through the SDK', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  beforeAll(async () => { client = await swarm.serving([[0, 5], [0, 5]]) }, 60_000)
  afterAll(async () => { await swarm.close() })

  it('0: every session takes the same server; 0.5: sessions spread over both', async () => {
    const fixed = await LanguageModel.swarm(client, BUNDLED_MODEL, { routeJitter: 0 })
    expect((await firstServers(fixed, 12)).size).toBe(1)
    await fixed.release()
    // hops cost 5 blocks at 1 ms plus 1 ms plus an RTT under a millisecond on loopback: a
    // factor up to 1.5 outweighs the difference; 30 plans on one server would be a 1e-6 chance
    const spread = await LanguageModel.swarm(client, BUNDLED_MODEL, { routeJitter: 0.5 })
    expect((await firstServers(spread, 30)).size).toBe(2)
    await spread.release()
  }, 60_000)
})
