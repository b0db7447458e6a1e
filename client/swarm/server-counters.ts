import { peerIdFromString } from '@libp2p/peer-id'
import type { PetalHost } from '../../net/host.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { listeningTimeout } from '../../net/listening-timeout.js'
import type { ServerMetrics } from '../../protocol/server-info.js'
import type { ServerRunCounts } from '../target-model.js'

/**
 * Server-side run counters over the life of one client sequence: each server's metrics
 * when the sequence first used it, and the difference now. Servers count every client's
 * runs, so the numbers are exact only when this client is alone on them.
 */
export class ServerCounters {
  readonly #host: PetalHost
  readonly #baseline = new Map<string, ServerMetrics | undefined>()

  constructor (host: PetalHost) {
    this.#host = host
  }

  /** Reads the counters of servers not seen before. */
  async record (peers: readonly string[]): Promise<void> {
    await Promise.all(peers.filter(p => !this.#baseline.has(p)).map(async peer => {
      this.#baseline.set(peer, await this.#metrics(peer))
    }))
  }

  /** Runs computed, dropped and aborted since `record`, by peer id (servers that died are left out). */
  async delta (): Promise<Record<string, ServerRunCounts>> {
    const out: Record<string, ServerRunCounts> = {}
    await Promise.all([...this.#baseline].map(async ([peer, before]) => {
      const now = await this.#metrics(peer)
      if (now === undefined || before === undefined) return
      out[peer] = {
        computed: now.runsComputed - before.runsComputed,
        droppedBeforeStart: now.runsDroppedBeforeStart - before.runsDroppedBeforeStart,
        abortedMidRun: now.runsAbortedMidRun - before.runsAbortedMidRun,
        droppedLate: now.runsDroppedLate - before.runsDroppedLate
      }
    }))
    return out
  }

  async #metrics (peer: string): Promise<ServerMetrics | undefined> {
    try {
      return (await fetchServerInfo(this.#host, peerIdFromString(peer), { signal: listeningTimeout(2000).signal })).metrics
    } catch {
      return undefined // a dead server has no counters to read
    }
  }
}
