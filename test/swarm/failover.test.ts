import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { LocalSwarm, type ServerProcess } from '../../node/local-swarm.js'
import { DraftModelDrafter, loadDraftModel } from '../../client/decoding/index.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { BUNDLED_MODEL, fixtureDir, readReference } from '../helpers/fixtures.js'
import { peerIdOf, waitForServers } from '../helpers/swarm.js'

/**
 * Six servers with overlapping spans; one on the route is stopped (SIGTERM) or killed (SIGKILL) mid-generation.
 * The client re-routes only that span, replays its inputs, and the tokens do not change.
 */
describe('failover', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  const ref = readReference('stories260k').prompts[0]

  beforeAll(async () => {
    // the first server (everyone's bootstrap node) is never stopped; blocks 3-4 have five servers,
    // so each of the four tests can take one away and still leave a stand-in
    await swarm.add({ blocks: '0:3' }, { blocks: '0:2' }, { blocks: '2:5' }, { blocks: '3:5' }, { blocks: '1:5' }, { blocks: '2:5' }, { blocks: '3:5' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 7)
  }, 90_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('a server stopped with SIGTERM mid-generation drains: the client moves its blocks before it goes, tokens unchanged', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const session = await model.session({ maxTokens: 128 })
    const target = session.target as SwarmTarget
    const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
    let stopped: ServerProcess | undefined
    let exited: Promise<number | null> | undefined
    let count = 0
    let step = await gen.next()
    while (step.done !== true) {
      count += step.value.tokens.length
      if (stopped === undefined && count >= 10) {
        stopped = pickVictim(swarm, target.route.map(h => h.peerId))
        exited = swarm.stop(stopped, 'SIGTERM')
        await new Promise(resolve => setTimeout(resolve, 50)) // let the notice arrive mid-generation
      }
      step = await gen.next()
    }
    expect(step.value.tokens).toEqual(ref.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(step.value.stats.target.routeChanges?.[0]).toContain('it is draining')
    expect(step.value.stats.target.route).not.toContain(peerIdOf(stopped?.address ?? '').slice(-6))
    expect(await exited).toBe(0)
    await session.close()
    await model.release()
  }, 60_000)

  for (const mode of ['client-mediated', 'push'] as const) {
    it(`a server killed with SIGKILL mid-generation does not change the tokens (${mode})`, async () => {
      const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: mode === 'push' })
      const session = await model.session({ maxTokens: 128 })
      const target = session.target as SwarmTarget
      const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
      const arrivals: number[] = []
      let killed: ServerProcess | undefined
      let step = await gen.next()
      while (step.done !== true) {
        arrivals.push(performance.now())
        if (killed === undefined && arrivals.length === 10) {
          killed = pickVictim(swarm, target.route.map(h => h.peerId))
          killed.child.kill('SIGKILL')
        }
        step = await gen.next()
      }
      const result = step.value
      expect(result.tokens).toEqual(ref.greedy_new_ids)
      expect(result.stats.target.failovers).toBeGreaterThanOrEqual(1)
      expect(result.stats.target.route).not.toContain(peerIdOf(killed?.address ?? '').slice(-6))
      const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number))
      // the stall: the longest gap between two tokens, with the failover in it
      console.log(`[failover ${mode}] stall ${Math.max(...gaps).toFixed(0)} ms, median gap ${gaps.sort((a, b) => a - b)[gaps.length >> 1]?.toFixed(1)} ms, route changes: ${JSON.stringify(result.stats.target.routeChanges)}`)
      await session.close()
      await model.release()
    }, 60_000)
  }

  it('pipelined tree speculation in push mode survives a server killed mid-generation: runs with branch rows are replayed whole', async () => {
    const draft = await loadDraftModel(Checkpoint.open(fixtureDir('stories260k-draft')))
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true, sendDelayMs: 2 })
    const session = await model.session({ maxTokens: 128 })
    const target = session.target as SwarmTarget
    const gen = session.generate(ref.prompt_ids, {
      maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false, speculation: 'pipelined', drafter: new DraftModelDrafter(draft), branches: 8
    })
    let killed: ServerProcess | undefined
    let count = 0
    let step = await gen.next()
    while (step.done !== true) {
      count += step.value.tokens.length
      if (killed === undefined && count >= 8) {
        killed = pickVictim(swarm, target.route.map(h => h.peerId))
        killed.child.kill('SIGKILL')
      }
      step = await gen.next()
    }
    expect(step.value.tokens).toEqual(ref.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(step.value.stats.decode?.branchRows).toBeGreaterThan(0)
    await session.close()
    await model.release()
    await draft.release()
  }, 60_000)
})

/** The server of the route's last hop (the bootstrap node is spared so discovery keeps working). */
function pickVictim (swarm: LocalSwarm, route: string[]): ServerProcess {
  const onRoute = route.map(id => swarm.servers.find(s => peerIdOf(s.address) === id))
  const victim = [...onRoute].reverse().find(s => s !== undefined && s !== swarm.servers[0])
  if (victim === undefined) throw new Error(`no killable server on the route ${route.join(' -> ')}`)
  return victim
}
