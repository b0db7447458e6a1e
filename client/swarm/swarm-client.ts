import type { Logger } from 'pino'
import { findServers } from '../../net/discovery.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { ServerDirectory, type KnownServer } from './server-directory.js'

export interface SwarmClientInit {
  /** Multiaddrs (with /p2p/<id>) of any nodes of the swarm. */
  bootstrap: string[]
  /** How long one discovery may take, ms. Default 5 s. */
  discoveryTimeoutMs?: number
  /**
   * How often each model's servers are discovered again in the background, ms (default 30 s;
   * 0: only when a route cannot be found). New sessions then use servers that joined since, and
   * leave out the ones that left, without waiting for a failure.
   */
  refreshIntervalMs?: number
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
  readonly #refreshTimers: Array<ReturnType<typeof setInterval>> = []
  #closed = false

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
    const known = this.#directories.get(modelId)
    if (known !== undefined) return known
    await this.refresh(modelId, numBlocks)
    return this.#directoryOf(modelId, numBlocks)
  }

  /** The model's directory, created empty (and kept fresh in the background from then on) on first use. */
  #directoryOf (modelId: string, numBlocks: number): ServerDirectory {
    let dir = this.#directories.get(modelId)
    if (dir === undefined) {
      dir = new ServerDirectory()
      this.#directories.set(modelId, dir)
      this.#refreshInBackground(modelId, numBlocks)
    }
    return dir
  }

  /** Rediscovers the model's servers every refreshIntervalMs, one discovery at a time; never keeps the process alive. */
  #refreshInBackground (modelId: string, numBlocks: number): void {
    const every = this.#init.refreshIntervalMs ?? 30_000
    if (!(every > 0) || this.#closed) return
    let running = false
    const timer = setInterval(() => {
      if (running || this.#closed) return
      running = true
      this.refresh(modelId, numBlocks)
        .catch((err: unknown) => { if (!this.#closed) this.logger?.debug({ modelId, err: (err as Error).message }, 'background discovery failed') })
        .finally(() => { running = false })
    }, every)
    timer.unref()
    this.#refreshTimers.push(timer)
  }

  /** Asks the DHT again who serves the model's blocks, then each server for its info and RTT. */
  async refresh (modelId: string, numBlocks: number): Promise<KnownServer[]> {
    const began = performance.now()
    const asked = new Set<string>()
    const servers = await findServers(this.host, modelId, numBlocks, { timeoutMs: this.#init.discoveryTimeoutMs ?? 5000, asked })
    const directory = this.#directoryOf(modelId, numBlocks)
    directory.update(servers, began, asked)
    if (this.logger?.isLevelEnabled('debug') === true) {
      const found = new Set(servers.map(s => s.info.peerId))
      const keptUnfound = directory.all().filter(k => !found.has(k.info.peerId)).map(k => `…${k.info.peerId.slice(-6)}`)
      this.logger.debug({ modelId, ms: Math.round(performance.now() - began), servers: servers.map(s => `…${s.info.peerId.slice(-6)}[${s.info.start},${s.info.end}) ${s.info.state}`), keptUnfound }, 'discovered servers')
    }
    return servers
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#refreshTimers.splice(0)) clearInterval(timer)
    await this.host.stop()
  }
}
