/**
 * A server behind a port forward: it listens on one port and announces another, where a
 * forwarder (as a NAT router would) passes connections on. Peers must learn and dial only
 * the announced address.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import type { PetalServer } from '../../node/server.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { fullyCovered, generateGreedy, waitForServers } from '../helpers/swarm.js'

/** Listens on 127.0.0.1 and pipes every connection to `targetPort`; counts them. */
class PortForward {
  connections = 0
  readonly #server: Server
  readonly #sockets = new Set<Socket>()

  private constructor (server: Server) { this.#server = server }

  static async open (targetPort: () => number): Promise<PortForward> {
    const forward: PortForward = new PortForward(createServer(inbound => {
      forward.connections++
      const outbound = connect(targetPort(), '127.0.0.1')
      for (const s of [inbound, outbound]) {
        forward.#sockets.add(s)
        s.on('error', () => { inbound.destroy(); outbound.destroy() })
        s.on('close', () => { forward.#sockets.delete(s) })
      }
      inbound.pipe(outbound).pipe(inbound)
    }))
    await new Promise<void>(resolve => forward.#server.listen(0, '127.0.0.1', resolve))
    return forward
  }

  get port (): number { return (this.#server.address() as { port: number }).port }

  async close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise(resolve => this.#server.close(resolve))
  }
}

/** A TCP port that was free a moment ago (the server behind the forward must listen on a known port). */
async function freePort (): Promise<number> {
  const probe = createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise(resolve => probe.close(resolve))
  return port
}

describe('--announce: a server reachable only through a port forward', () => {
  const swarm = new InProcessSwarm()
  const ref = readReference('stories260k').prompts[0]
  let listenPort = 0
  let forward: PortForward
  let hidden: PetalServer
  let client: SwarmClient
  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 3 } })
    forward = await PortForward.open(() => listenPort)
    listenPort = await freePort()
    hidden = await swarm.start({ blocks: { start: 3, end: 5 }, listen: [`/ip4/127.0.0.1/tcp/${listenPort}`], announce: [`/ip4/127.0.0.1/tcp/${forward.port}`] })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, fullyCovered(5))
  }, 30_000)
  afterAll(async () => {
    await swarm.close()
    await forward.close()
  })

  it('prints, tells in its info and is found at only the announced address', async () => {
    expect(hidden.address).toBe(`/ip4/127.0.0.1/tcp/${forward.port}/p2p/${hidden.host.peerId.toString()}`)
    const known = await waitForServers(client, 'stories260k', 5, fullyCovered(5))
    const info = known.find(s => s.info.peerId === hidden.host.peerId.toString())?.info
    expect(info?.addrs).toEqual([hidden.address])
  }, 30_000)

  it('serves a generation through the forward, with the reference tokens', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const result = await generateGreedy(model, ref.prompt_ids, 24)
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 24))
    expect(result.stats.target.route).toContain(hidden.host.peerId.toString().slice(-6))
    await model.release()
    // the client reached the hidden server through the forward: its own connection or an earlier one
    expect(forward.connections).toBeGreaterThan(0)
    expect(client.host.getConnections(hidden.host.peerId).map(c => c.remoteAddr.toString()))
      .toContain(`/ip4/127.0.0.1/tcp/${forward.port}/p2p/${hidden.host.peerId.toString()}`)
  }, 30_000)
})
