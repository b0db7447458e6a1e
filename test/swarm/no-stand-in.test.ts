import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { NoRouteError } from '../../client/routing/route-planner.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { fullyCovered, peerIdOf, waitForServers } from '../helpers/swarm.js'

/** The only server of a span dies mid-generation: the generation fails and says why. */
describe('failover without a stand-in', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  const ref = readReference('stories260k').prompts[0]

  beforeAll(async () => {
    await swarm.add({ blocks: '0:3' }, { blocks: '3:5' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, fullyCovered(5))
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('rejects with NoRouteError naming the blocks, the lost server and its failure', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const victim = swarm.servers[1]
    const gen = model.generate(ref.prompt_ids, { maxNewTokens: 40, temperature: 0, stopAtEos: false })
    let chunks = 0
    const failure = await (async () => {
      try {
        for await (const _ of gen) if (++chunks === 5) victim?.child.kill('SIGKILL')
      } catch (err) {
        return err
      }
      return undefined
    })()
    expect(chunks).toBeGreaterThanOrEqual(5)
    expect(failure).toBeInstanceOf(NoRouteError)
    const err = failure as NoRouteError
    expect(err.uncovered).toEqual([3, 4])
    expect(err.message).toContain('Cannot route blocks [3, 5)')
    expect(err.message).toContain(`after …${peerIdOf(victim?.address ?? '').slice(-6)} failed`)
    expect(err.cause).toBeInstanceOf(Error)
    await model.release()
  }, 60_000)
})
