import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { peerIdOf, waitForServers } from '../helpers/swarm.js'

/**
 * Push mode, the route's first server killed mid-generation: the runs it took down go on hop
 * by hop, and the servers after it (alive) must answer them at once. They once waited 30 s
 * each: the client told them to cancel those runs and then sent them the same runs again,
 * which a server drops, so each got a timeout, a ban and a failover of its own (found by
 * `npm run soak`).
 */
describe('push mode: the first hop dies', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  const ref = readReference('stories260k').prompts[1]

  beforeAll(async () => {
    // [3,5) is everyone's bootstrap node and the only server of its blocks; [0,3) has a stand-in
    await swarm.add({ blocks: '3:5' }, { blocks: '0:3' }, { blocks: '0:3' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 90_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('the later servers answer the rerouted runs at once: one failover, no stall, tokens unchanged', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true })
    const session = await model.session({ maxTokens: 128 })
    const target = session.target as SwarmTarget
    const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
    const arrivals: number[] = []
    let killed: string | undefined
    let step = await gen.next()
    while (step.done !== true) {
      arrivals.push(performance.now())
      if (killed === undefined && arrivals.length === 10) {
        const first = target.route[0]?.peerId
        const victim = swarm.servers.find(s => peerIdOf(s.address) === first)
        if (victim === undefined || victim === swarm.servers[0]) throw new Error(`the route does not start at a [0,3) server: ${JSON.stringify(target.route)}`)
        killed = first
        victim.child.kill('SIGKILL')
      }
      step = await gen.next()
    }
    const result = step.value
    expect(result.tokens).toEqual(ref.greedy_new_ids)
    // only the killed server was replaced: [3,5) is still on the route, never timed out
    expect(result.stats.target.routeChanges).toHaveLength(1)
    expect(result.stats.target.routeChanges?.[0]).toContain(`…${killed?.slice(-6)}`)
    expect(result.stats.target.route).toContain(peerIdOf(swarm.bootstrap).slice(-6))
    const stall = Math.max(...arrivals.slice(1).map((t, i) => t - (arrivals[i] as number)))
    expect(stall).toBeLessThan(10_000)
    await session.close()
    await model.release()
  }, 90_000)
})
