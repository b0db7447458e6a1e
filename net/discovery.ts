/**
 * Finding a model's servers: who the DHT says provides each block, then what each of
 * them says about itself (/petal/1/info) and how far away it is (ping).
 *
 * Provider records outlive servers by up to two days and cannot be withdrawn, so the
 * DHT only nominates candidates: a peer that does not answer info is not listed.
 * Peers we are already connected to are asked too, even when the DHT does not name
 * them (yet): a server that just joined has announced to few peers, and one that is
 * still joining (loading its span) has announced nothing but already answers info,
 * which lets servers started together see each other. A connected peer that is no
 * server (a client) fails protocol negotiation at once and is skipped.
 */
import type { AbortOptions, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p } from 'libp2p'
import { blockCid } from '../protocol/dht-keys.js'
import type { ServerInfo } from '../protocol/server-info.js'
import { fetchServerInfo } from './info-client.js'
import { listeningTimeout } from './listening-timeout.js'
import { measureRtt } from './rtt-probe.js'

/** DHT lookups (one per block) in flight at once. */
const MAX_PARALLEL_LOOKUPS = 8

/** A server that answered, and its round-trip time from here. */
export interface FoundServer {
  readonly info: ServerInfo
  /** Ping round trip on an open stream, ms with sub-ms precision (the info round trip when ping failed). */
  readonly rttMs: number
}

/** Options of findServers. */
export interface FindServersOptions extends AbortOptions {
  /** How long the DHT lookups may take, ms (default 5000). Lookups that end sooner are not waited for. */
  timeoutMs?: number
  /** Deadline of each info request and ping, ms (default 3000). */
  infoTimeoutMs?: number
  /** Also ask every connected peer (default true). */
  includeConnected?: boolean
  /** Also ask the servers that answering servers say they are connected to (default true). */
  peerExchange?: boolean
  /**
   * Filled with the id of every peer asked for its info: a known server missing from the
   * result but in here failed to answer (or serves something else); one not in here was not
   * found this time (a lookup that timed out, records not yet spread).
   */
  asked?: Set<string>
}

/** What findServers needs of a libp2p node. */
export type DiscoveryHost = Pick<Libp2p<{ dht: KadDHT }>, 'dial' | 'getPeers' | 'peerStore' | 'services'>

/**
 * Every reachable server of `modelId` (blocks [0, numBlocks)): looks up the provider
 * records of all blocks (8 lookups at a time), asks each distinct peer for its ServerInfo as
 * soon as it is found (peers that fail or serve another model are skipped) and pings
 * it. Resolves when the lookups have ended (or timed out) and every asked peer has
 * answered or failed; sorted by span start, then peer id. Rejects only when
 * `options.signal` aborts.
 */
export async function findServers (host: DiscoveryHost, modelId: string, numBlocks: number, options: FindServersOptions = {}): Promise<FoundServer[]> {
  const { signal } = options
  signal?.throwIfAborted()
  // listening time: a client busy computing must not count its own stall against the swarm
  const lookupSignal = anySignal(signal, listeningTimeout(options.timeoutMs ?? 5000).signal)
  const infoTimeoutMs = options.infoTimeoutMs ?? 3000
  const asked = new Map<string, Promise<FoundServer | undefined>>()
  const ask = (peer: PeerId): void => {
    const key = peer.toString()
    if (asked.has(key)) return
    options.asked?.add(key)
    asked.set(key, probe(host, peer, anySignal(signal, listeningTimeout(infoTimeoutMs).signal)).then(async found => {
      // peer exchange: the servers it is connected to are worth asking too
      for (const addr of options.peerExchange === false ? [] : found?.info.knownServers ?? []) {
        try {
          const [base, id] = addr.split('/p2p/')
          if (base === undefined || id === undefined || asked.has(id)) continue
          const peerId = peerIdFromString(id)
          await host.peerStore.merge(peerId, { multiaddrs: [multiaddr(base)] }).catch(() => {})
          ask(peerId)
        } catch {
          // a malformed address from a peer is just not followed
        }
      }
      return found
    }))
  }

  const connected = host.getPeers()
  if (options.includeConnected !== false) for (const peer of connected) ask(peer)
  const blocks = Array.from({ length: connected.length === 0 ? 0 : numBlocks }, (_, b) => b)
  const lookup = async (): Promise<void> => {
    for (let block = blocks.shift(); block !== undefined; block = blocks.shift()) {
      try {
        for await (const event of host.services.dht.findProviders(blockCid(modelId, block), { signal: lookupSignal })) {
          if (event.name !== 'PROVIDER') continue
          for (const provider of event.providers) {
            if (provider.multiaddrs.length > 0) {
              await host.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
            }
            ask(provider.id)
          }
        }
      } catch {
        // a lookup that times out or finds no peer simply ends: keep what it found
      }
    }
  }
  await Promise.all(Array.from({ length: MAX_PARALLEL_LOOKUPS }, lookup))
  // the lookups' walks connect to DHT servers near the keys: those are likely Petal servers
  // even when no provider record came back from them (records are spread thin in a small swarm)
  if (options.includeConnected !== false) for (const peer of host.getPeers()) ask(peer)
  signal?.throwIfAborted()
  // answers can name more servers to ask: wait until no new ones appear
  for (let size = -1; size !== asked.size;) {
    size = asked.size
    await Promise.all(asked.values())
  }
  const found = (await Promise.all(asked.values())).filter((s): s is FoundServer => s?.info.modelId === modelId)
  signal?.throwIfAborted()
  return found.sort((a, b) => a.info.start - b.info.start || (a.info.peerId < b.info.peerId ? -1 : 1))
}

/** Info and RTT of one peer, or undefined when it does not answer. */
async function probe (host: DiscoveryHost, peer: PeerId, signal: AbortSignal): Promise<FoundServer | undefined> {
  try {
    const began = performance.now()
    const info = await fetchServerInfo(host, peer, { signal })
    const infoMs = performance.now() - began
    const rttMs = await measureRtt(host, peer, { signal, trips: 3, gapMs: 10 }).catch(() => infoMs)
    return { info, rttMs }
  } catch {
    return undefined
  }
}

/** A signal that aborts when any of the given ones does. */
function anySignal (...signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined))
}
