/** A client opening a session while some blocks have no server fails at once, or waits for one with coverageWaitMs. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { NoRouteError } from '../../client/routing/route-planner.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { waitForServers } from '../helpers/swarm.js'

describe('coverageWaitMs when a session opens', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 3 } })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, s => s.length === 1)
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('without it, a session on a swarm missing blocks 3-4 fails with NoRouteError naming them', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const failure = await model.session({ maxTokens: 32 }).catch((err: unknown) => err)
    expect(failure).toBeInstanceOf(NoRouteError)
    expect((failure as NoRouteError).uncovered).toEqual([3, 4])
    await model.release()
  }, 30_000)

  it('with it, the session opens once a server for blocks 3-4 has joined', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { coverageWaitMs: 20_000 })
    const opening = model.session({ maxTokens: 32 })
    const late = await swarm.start({ blocks: { start: 3, end: 5 } })
    const session = await opening
    expect((session.target as SwarmTarget).route.at(-1)).toMatchObject({ peerId: late.host.peerId.toString(), start: 3, end: 5 })
    await session.close()
    await model.release()
  }, 30_000)
})
