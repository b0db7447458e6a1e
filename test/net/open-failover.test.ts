/** A server that drops the stream when asked to open a session: the client routes around it instead of failing. */
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ServerDirectory } from '../../client/swarm/server-directory.js'
import { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { forwardOnce } from '../../client/target-model.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { ClientParts } from '../../model/client-parts.js'
import { LocalModel } from '../../model/local-model.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { PROTOCOL_INFERENCE } from '../../protocol/ids.js'
import { BUNDLED_MODEL, maxAbsDiffRows } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { bareNode, inferenceStream, openSession } from '../helpers/wire-client.js'

describe('a server that fails to open a session', () => {
  const swarm = new InProcessSwarm()
  let dropper: Libp2p
  let client: PetalHost
  let parts: ClientParts
  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 5 } })
    dropper = await bareNode()
    // reads the open frame's first bytes, then closes the stream without a reply
    await dropper.handle(PROTOCOL_INFERENCE, (stream) => { stream.addEventListener('message', () => { void stream.close() }, { once: true }) })
    client = await createPetalHost({ dhtServer: false })
    parts = await ClientParts.load(Checkpoint.open(BUNDLED_MODEL))
  }, 30_000)
  afterAll(async () => {
    await parts?.release()
    await client?.stop()
    await dropper?.stop()
    await swarm.close()
  })

  it('is banned and the route planned again without it; the run is exact', async () => {
    const real = swarm.servers[0]!.info()
    // the dropper claims to be ten times faster, so the first route goes through it
    const fake = { ...real, peerId: dropper.peerId.toString(), addrs: dropper.getMultiaddrs().map(a => a.toString()), throughput: { decodeTokensPerSec: 10_000, prefillTokensPerSec: 10_000 } }
    await client.dial(multiaddr(swarm.servers[0]!.address))
    await client.dial(dropper.getMultiaddrs()[0]!)
    const directory = new ServerDirectory()
    directory.update([{ info: fake, rttMs: 1 }, { info: real, rttMs: 1 }])
    const target = await SwarmTarget.open({ host: client, directory, rediscover: async () => {}, parts, modelId: 'stories260k', maxTokens: 64, timeoutMs: 5000 })
    expect(directory.isBanned(dropper.peerId.toString())).toBe(true)
    expect(target.route.map(h => h.peerId)).toEqual([real.peerId])
    const ids = [1, 403, 407, 261, 378]
    const local = await LocalModel.load(Checkpoint.open(BUNDLED_MODEL))
    expect(maxAbsDiffRows(await forwardOnce(target, ids, 0), await local.newSession().forward(ids))).toBeLessThan(1e-4)
    await local.release()
    await target.close()
  }, 30_000)

  it('a server nothing listens for any more is forgotten, not just banned: the directory no longer offers it', async () => {
    const gone = await bareNode()
    const goneInfo = { ...swarm.servers[0]!.info(), peerId: gone.peerId.toString(), addrs: gone.getMultiaddrs().map(a => a.toString()), throughput: { decodeTokensPerSec: 10_000, prefillTokensPerSec: 10_000 } }
    await client.peerStore.merge(gone.peerId, { multiaddrs: gone.getMultiaddrs() })
    await gone.stop() // its port now refuses connections, as a killed server's does
    const directory = new ServerDirectory()
    directory.update([{ info: goneInfo, rttMs: 1 }, { info: swarm.servers[0]!.info(), rttMs: 1 }])
    const target = await SwarmTarget.open({ host: client, directory, rediscover: async () => {}, parts, modelId: 'stories260k', maxTokens: 64, timeoutMs: 5000 })
    expect(target.route.map(h => h.peerId)).toEqual([swarm.servers[0]!.info().peerId])
    expect(directory.all().map(s => s.info.peerId)).not.toContain(gone.peerId.toString())
    await target.close()
  }, 30_000)

  it('the only server of the blocks, full for a moment, gets one more chance after a pause', async () => {
    const full = new InProcessSwarm()
    try {
      const server = await full.start({ blocks: { start: 0, end: 5 }, maxSessions: 1 })
      const blocker = await inferenceStream(await bareNode(), server.address)
      await openSession(blocker, 'stories260k', 0, 5, 8)
      const directory = new ServerDirectory()
      directory.update([{ info: server.info(), rttMs: 1 }])
      await client.dial(multiaddr(server.address))
      setTimeout(() => { void blocker.close() }, 100) // the server frees its one session during the client's pause
      const target = await SwarmTarget.open({ host: client, directory, rediscover: async () => {}, parts, modelId: 'stories260k', maxTokens: 64, timeoutMs: 5000 })
      expect(target.route.map(h => h.peerId)).toEqual([server.info().peerId])
      expect((await forwardOnce(target, [1, 403], 0)).length).toBe(2)
      await target.close()
    } finally {
      await full.close()
    }
  }, 30_000)
})
