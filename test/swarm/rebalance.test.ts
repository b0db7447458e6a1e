import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { KnownServer } from '../../client/swarm/server-directory.js'
import { LocalSwarm, type ServerProcess } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { peerIdOf, waitForServers } from '../helpers/swarm.js'

/**
 * A `--num-blocks` server looks at the swarm again every ~second here (--rebalance-interval 1)
 * and moves to the blocks the swarm serves worst when that lifts its slowest block: the swarm
 * heals after a server leaves, and a move drains its sessions like a stop does.
 */
describe('rebalancing --num-blocks servers', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  const ref = readReference('stories260k').prompts[0]
  // one announced speed everywhere, so that decisions do not depend on how busy the cores were
  const speed = (tokensPerSecond: number): string[] => ['--throughput', String(tokensPerSecond)]
  let client: SwarmClient
  let mover: ServerProcess
  let moverId: string

  const find = (servers: KnownServer[]): KnownServer | undefined => servers.find(s => s.info.peerId === moverId)

  beforeAll(async () => {
    await swarm.add({ blocks: '0:3', args: speed(5000) }, { blocks: '3:5', args: speed(5000) })
    ;[mover] = await swarm.add({ blocks: 2, args: [...speed(5000), '--rebalance-interval', '1'] }) as [ServerProcess]
    moverId = peerIdOf(mover.address)
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('a server moves into the gap a killed server left, and the swarm generates the reference tokens again', async () => {
    // it joined a fully covered swarm: the first window, where it stays while [3,5) is served
    await sleep(2500) // two checks or more
    expect(find(await client.refresh('stories260k', 5))?.info).toMatchObject({ start: 0, end: 2, state: 'online' })
    expect(mover.stderr()).not.toContain('rebalancing: moving')

    const leaving = swarm.servers[1] as ServerProcess
    const t0 = Date.now()
    await swarm.stop(leaving, 'SIGKILL')
    await waitForServers(client, 'stories260k', 5, s => {
      const info = find(s)?.info
      return info?.start === 3 && info.end === 5 && info.state === 'online'
    }, 30_000)
    console.log(`[rebalance] blocks [3,5) served again ${Date.now() - t0} ms after their server was killed`)
    expect(mover.stderr()).toContain('rebalancing: moving')

    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const gen = model.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
    let step = await gen.next()
    while (step.done !== true) step = await gen.next()
    const result = step.value
    expect(result.tokens).toEqual(ref.greedy_new_ids)
    expect(result.stats.target.route).toContain(`…${moverId.slice(-6)}[3,5)`)
    await model.release()
  }, 60_000)

  it('a server that moves with a session open drains it: the client moves those blocks and the tokens do not change', async () => {
    // the route is [0,3) -> the mover at [3,5), the only holder of blocks 3-4
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const session = await model.session({ maxTokens: 128 })
    const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
    let count = 0
    let step = await gen.next()
    while (step.done !== true) {
      count += step.value.tokens.length
      if (count >= 5 && count - step.value.tokens.length < 5) {
        // a faster server for [2,5): the mover now lifts the swarm's slowest blocks more at [0,2)
        const [faster] = await swarm.add({ blocks: '2:5', args: speed(10_000) })
        const fasterId = peerIdOf(faster?.address ?? '')
        await waitForServers(client, 'stories260k', 5, s => s.some(x => x.info.peerId === fasterId) && find(s)?.info.state !== 'online', 30_000)
      }
      step = await gen.next()
    }
    expect(step.value.tokens).toEqual(ref.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(step.value.stats.target.routeChanges?.[0]).toContain('it is draining')
    expect(step.value.stats.target.route).not.toContain(`…${moverId.slice(-6)}[3,5)`)
    await waitForServers(client, 'stories260k', 5, s => find(s)?.info.start === 0 && find(s)?.info.state === 'online', 30_000)
    await session.close()
    await model.release()
  }, 90_000)

  it('a client that waits for coverage finishes a generation whose blocks lost their only server, once a server moves there', async () => {
    // now [0,3), the mover at [0,2) and the faster [2,5), the only holder of blocks 3-4
    const holder = swarm.servers[3] as ServerProcess
    expect(find(await client.refresh('stories260k', 5))?.info).toMatchObject({ start: 0, end: 2 })
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { coverageWaitMs: 30_000 })
    const gen = model.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
    const arrivals: number[] = []
    let step = await gen.next()
    while (step.done !== true) {
      arrivals.push(performance.now())
      if (arrivals.length === 5) await swarm.stop(holder, 'SIGKILL')
      step = await gen.next()
    }
    expect(step.value.tokens).toEqual(ref.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(step.value.stats.target.route).toContain(`…${moverId.slice(-6)}[3,5)`)
    const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number))
    console.log(`[rebalance] generation stalled ${Math.max(...gaps).toFixed(0)} ms while the swarm healed; route changes: ${JSON.stringify(step.value.stats.target.routeChanges)}`)
    await model.release()
  }, 60_000)
})
