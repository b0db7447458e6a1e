import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { PetalServer, type PetalServerInit } from '../../node/server.js'
import { BUNDLED_MODEL } from './fixtures.js'
import { waitForServers } from './swarm.js'

/** One announced speed, so that routing does not depend on how busy the cores were at start. */
const SPEED = { decodeTokensPerSec: 1000, prefillTokensPerSec: 1000 }

/**
 * Servers of the bundled model in this process (the first is everyone's bootstrap node), and
 * clients of theirs; `close()` stops them all. For net tests: faster than node processes.
 */
export class InProcessSwarm {
  readonly servers: PetalServer[] = []
  readonly #clients: SwarmClient[] = []

  /** Starts a server (joining through the first one) and resolves when it is online. */
  async start (init: Omit<PetalServerInit, 'modelDir'>): Promise<PetalServer> {
    const first = this.servers[0]
    const server = new PetalServer({ modelDir: BUNDLED_MODEL, throughput: SPEED, drainGraceMs: 200, ...(first !== undefined ? { bootstrap: [first.address] } : {}), ...init })
    this.servers.push(server)
    await server.start()
    return server
  }

  /** Servers of `spans` ([start, end) each), then a client that has discovered them all. */
  async serving (spans: ReadonlyArray<readonly [number, number]>): Promise<SwarmClient> {
    for (const [start, end] of spans) await this.start({ blocks: { start, end } })
    const client = await this.connect()
    await waitForServers(client, 'stories260k', 5, servers => servers.length === this.servers.length)
    return client
  }

  /** A client bootstrapped through the first server. */
  async connect (): Promise<SwarmClient> {
    const first = this.servers[0]
    if (first === undefined) throw new Error('The swarm has no server yet')
    const client = await SwarmClient.connect({ bootstrap: [first.address] })
    this.#clients.push(client)
    return client
  }

  async close (): Promise<void> {
    await Promise.all(this.#clients.splice(0).map(async c => { await c.close() }))
    await Promise.all(this.servers.splice(0).map(async s => { await s.stop() }))
  }
}

/** Like a SIGKILL: every connection of the server reset, and nothing listens any more. */
export async function killAbruptly (server: PetalServer): Promise<void> {
  for (const c of server.host.getConnections()) c.abort(new Error('killed'))
  await server.host.stop()
}
