/**
 * A long-lived client (an API server, a chat) looks at the swarm again by itself: new sessions
 * use a server that joined since, and leave out one that left, without a failure first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { ServerDirectory } from '../../client/swarm/server-directory.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'

/** Polls `check` (no discovery of its own) until it holds, or fails after `ms`. */
async function eventually (check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('background discovery', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  let directory: ServerDirectory

  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 5 } })
    client = await SwarmClient.connect({ bootstrap: [swarm.servers[0]?.address ?? ''], refreshIntervalMs: 300 })
    // a first discovery of the caller's own (as waitForServers does) also starts the background ones
    await client.refresh('stories260k', 5)
    directory = await client.directory('stories260k', 5)
  }, 30_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('finds a server that joined, and new sessions go through it', async () => {
    expect(directory.all()).toHaveLength(1)
    // ten times faster than the first: a route through it is the quickest
    const joined = await swarm.start({ blocks: { start: 0, end: 5 }, throughput: { decodeTokensPerSec: 10_000, prefillTokensPerSec: 10_000 } })
    const id = joined.host.peerId.toString()
    await eventually(() => directory.get(id) !== undefined, 10_000)
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const session = await model.session({ maxTokens: 32 })
    expect(session.target.stats().route).toBe(`…${id.slice(-6)}[0,5)`)
    await session.close()
    await model.release()
  }, 30_000)

  it('forgets a server that left', async () => {
    const leaving = swarm.servers[1]
    if (leaving === undefined) throw new Error('no second server')
    const id = leaving.host.peerId.toString()
    expect(directory.get(id)).toBeDefined()
    swarm.servers.splice(1, 1)
    await leaving.stop()
    await eventually(() => directory.get(id) === undefined, 15_000)
    expect(directory.all().map(s => s.info.peerId)).toEqual([swarm.servers[0]?.host.peerId.toString()])
  }, 30_000)
})
