import type { Logger } from 'pino'
import { findServers } from '../../net/discovery.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { ServerDirectory, type KnownServer } from './server-directory.js'

export interface SwarmClientInit {
  /** Multiaddrs (with /p2p/<id>) of any nodes of the swarm. */
  bootstrap: string[]
  /** How long one discovery may take, ms. Default 5 s. */
  discoveryTimeoutMs?: number
  logger?: Logger
}

/**
 * A client's connection to a swarm: a libp2p node in DHT client mode, and what it
 * has learned about each model's servers.
 */
export class SwarmClient {
  readonly host: PetalHost
  readonly logger: Logger | undefined
  readonly #init: SwarmClientInit
  readonly #directories = new Map<string, ServerDirectory>()

  private constructor (host: PetalHost, init: SwarmClientInit) {
    this.host = host
    this.#init = init
    this.logger = init.logger
  }

  static async connect (init: SwarmClientInit): Promise<SwarmClient> {
    if (init.bootstrap.length === 0) throw new Error('Cannot connect to a swarm without a bootstrap address')
    return new SwarmClient(await createPetalHost({ bootstrap: init.bootstrap, dhtServer: false }), init)
  }

  /** The directory of a model's servers (discovered on first use). */
  async directory (modelId: string, numBlocks: number): Promise<ServerDirectory> {
    let dir = this.#directories.get(modelId)
    if (dir === undefined) {
      dir = new ServerDirectory()
      this.#directories.set(modelId, dir)
      await this.refresh(modelId, numBlocks)
    }
    return dir
  }

  /** Asks the DHT again who serves the model's blocks, then each server for its info and RTT. */
  async refresh (modelId: string, numBlocks: number): Promise<KnownServer[]> {
    const began = performance.now()
    const servers = await findServers(this.host, modelId, numBlocks, { timeoutMs: this.#init.discoveryTimeoutMs ?? 5000 })
    let dir = this.#directories.get(modelId)
    if (dir === undefined) {
      dir = new ServerDirectory()
      this.#directories.set(modelId, dir)
    }
    dir.update(servers, began)
    this.logger?.debug({ modelId, servers: servers.length }, 'discovered servers')
    return servers
  }

  async close (): Promise<void> {
    await this.host.stop()
  }
}
