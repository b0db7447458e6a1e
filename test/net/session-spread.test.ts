/** Sessions one client opens one after another spread over equal servers (routing counts its own open sessions). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { waitForServers } from '../helpers/swarm.js'

describe('sessions of one client on equal servers', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  // slow announced speeds: a session's share of compute (100 ms per token) outweighs any
  // difference in measured RTT, which is noisy on a loaded machine
  const throughput = { decodeTokensPerSec: 50, prefillTokensPerSec: 50 }
  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 5 }, throughput })
    await swarm.start({ blocks: { start: 0, end: 5 }, throughput })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, s => s.length === 2)
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('go to different servers, and a closed session frees its server for the next one', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const peerOf = (t: unknown): string => (t as SwarmTarget).route[0]?.peerId as string
    const a = await model.session({ maxTokens: 32 })
    const b = await model.session({ maxTokens: 32 })
    expect(peerOf(a.target)).not.toBe(peerOf(b.target))
    const freed = peerOf(a.target)
    await a.close()
    const c = await model.session({ maxTokens: 32 })
    expect(peerOf(c.target)).toBe(freed)
    await Promise.all([b.close(), c.close()])
    await model.release()
  }, 30_000)
})
