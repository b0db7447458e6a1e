import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { TransportManager } from '@libp2p/interface-internal'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { DHT_PROTOCOL } from '../protocol/ids.js'
import { lazyWindowYamux } from './lazy-window-yamux.js'
import { wholeMessageNoise } from './whole-message-noise.js'

export type PetalServices = {
  identify: unknown
  ping: Ping
  dht: KadDHT
  listener: ListenAfterStart
}

/** Listening on more addresses once the node runs: libp2p keeps its transport manager to itself. */
export interface ListenAfterStart {
  listen: (addrs: Multiaddr[]) => Promise<void>
}

function listenAfterStart () {
  return (components: { transportManager: TransportManager }): ListenAfterStart => ({
    listen: async addrs => { await components.transportManager.listen(addrs) }
  })
}

export type PetalHost = Libp2p<PetalServices>

export interface PetalHostInit {
  /** Persistent identity; a fresh one when absent. */
  privateKey?: PrivateKey
  /** Multiaddrs to listen on; default one TCP port on 127.0.0.1 chosen by the OS. */
  listen?: string[]
  /**
   * The addresses other peers should dial, in place of the listen addresses (a public IP, a
   * port forward): identify and the DHT's records then carry only these. Default: the listen
   * addresses (0.0.0.0 expanded to the machine's interfaces).
   */
  announce?: string[]
  /** Multiaddrs (with /p2p/<id>) of any nodes already in the swarm. */
  bootstrap?: string[]
  /**
   * Servers answer DHT queries; pure clients only ask. Set explicitly: left to itself, a
   * node without a public address never becomes a DHT server (js-libp2p #3180).
   */
  dhtServer: boolean
  /** Abort dialing the bootstrap nodes after this long, ms. Default 10 s. */
  dialTimeoutMs?: number
  /** How often libp2p's connection monitor pings each connection, ms. Default 10 s (libp2p's). */
  monitorPingIntervalMs?: number
  /**
   * Relay connections for Petal servers that cannot be dialed directly (behind NAT): they
   * listen on `<this node's address>/p2p-circuit` or on `/p2p-circuit` (any relay they meet).
   * Off by default: every byte of their traffic then passes through this node. Only peers
   * that speak Petal's DHT protocol (servers) get a reservation.
   */
  relay?: { maxReservations: number }
}

/**
 * Pings one peer may have open at once, each way. libp2p's connection monitor pings every
 * connection now and then and aborts the connection, every stream on it included, when that
 * ping fails; with ping's default of 1 outbound stream its ping failed whenever it met one of
 * discovery's ("Too many outbound protocol streams ... 2/1"), which took down live inference
 * sessions and got healthy servers banned.
 */
const MAX_PING_STREAMS = 8

/**
 * A libp2p node as every Petal peer runs it: TCP, noise (each message one write), yamux
 * (window updates every half window), identify, ping, and a
 * Kademlia DHT under Petal's own protocol id that keeps loopback and LAN addresses
 * (`passthroughMapper`), so a swarm on one machine or a LAN works. Circuit relay v2 lets any
 * node dial a peer behind a NAT through its relay; a node with `relay` also acts as one.
 */
export async function createPetalHost (init: PetalHostInit): Promise<PetalHost> {
  let self: PetalHost | undefined // the gate below runs once the node exists
  const node = await createLibp2p<PetalServices>({
    ...(init.privateKey !== undefined ? { privateKey: init.privateKey } : {}),
    addresses: { listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'], ...(init.announce !== undefined && init.announce.length > 0 ? { announce: init.announce } : {}) },
    // every node can dial (and, with a /p2p-circuit listen address, be reached) through a relay
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [wholeMessageNoise()],
    streamMuxers: [lazyWindowYamux()],
    ...(init.monitorPingIntervalMs !== undefined ? { connectionMonitor: { pingInterval: init.monitorPingIntervalMs } } : {}),
    ...(init.relay !== undefined ? { connectionGater: { denyInboundRelayReservation: async (peer: PeerId) => self === undefined || !(await speaksPetalDht(self, peer)) } } : {}),
    services: {
      identify: identify(),
      ping: ping({ maxInboundStreams: MAX_PING_STREAMS, maxOutboundStreams: MAX_PING_STREAMS }),
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: !init.dhtServer, peerInfoMapper: passthroughMapper }),
      listener: listenAfterStart(),
      // Inference sessions are long and heavy: relayed connections get no time or data limit
      // (libp2p's defaults, 2 minutes and 128 KiB, suit hole punching, not serving through a relay).
      ...(init.relay !== undefined ? { relay: circuitRelayServer({ reservations: { maxReservations: init.relay.maxReservations, applyDefaultLimit: false } }) } : {})
    }
  }).catch((err: Error) => { throw explainRelayFailure(err, init.listen ?? []) })
  self = node
  const bootstrap = init.bootstrap ?? []
  const results = await Promise.allSettled(bootstrap.map(async addr =>
    await node.dial(multiaddr(addr), { signal: AbortSignal.timeout(init.dialTimeoutMs ?? 10_000) })))
  if (bootstrap.length > 0 && results.every(r => r.status === 'rejected')) {
    await node.stop()
    const reason = (results[0] as PromiseRejectedResult).reason as Error
    throw new Error(`Cannot join the swarm: no bootstrap node answered (${bootstrap.join(', ')}): ${reason.message}`, { cause: reason })
  }
  return node
}

/** The node's first full address, with /p2p/<peer id>. */
export function fullAddress (node: PetalHost): string {
  const addr = node.getMultiaddrs()[0]
  if (addr === undefined) throw new Error('The node listens on no address')
  return addr.toString()
}

/**
 * libp2p fails to start when a relay named in a /p2p-circuit listen address refuses the
 * reservation or is no relay at all ("could not negotiate /libp2p/circuit/relay/0.2.0/hop");
 * says so in Petal's terms.
 */
function explainRelayFailure (err: Error, listen: readonly string[]): Error {
  const relayed = listen.filter(a => a.includes('/p2p-circuit') && a !== '/p2p-circuit')
  if (relayed.length === 0 || !/circuit\/relay/.test(err.message)) return err
  return new Error(`Cannot listen through the relay in ${relayed.join(', ')}: it refused the reservation or is no relay (a relay is a node started with petal-node serve --relay N)`, { cause: err })
}

/** How long a relay waits for identify to say which protocols a peer asking for a reservation speaks. */
const IDENTIFY_WAIT_MS = 3000

/**
 * Whether `peer` speaks Petal's DHT protocol, as identify reports it: every Petal server
 * does, other libp2p peers do not. Identify of a peer that just connected may still be
 * running when it asks for a reservation, so this waits for it a while.
 */
async function speaksPetalDht (node: PetalHost, peer: PeerId): Promise<boolean> {
  const known = async (): Promise<boolean> => (await node.peerStore.get(peer).catch(() => undefined))?.protocols.includes(DHT_PROTOCOL) === true
  if (await known()) return true
  return await new Promise<boolean>(resolve => {
    const done = (answer: boolean): void => {
      clearTimeout(timer)
      node.removeEventListener('peer:identify', onIdentify)
      resolve(answer)
    }
    const onIdentify = (evt: CustomEvent<{ peerId: PeerId, protocols: string[] }>): void => {
      if (evt.detail.peerId.equals(peer)) done(evt.detail.protocols.includes(DHT_PROTOCOL))
    }
    const timer = setTimeout(() => { void known().then(done) }, IDENTIFY_WAIT_MS)
    node.addEventListener('peer:identify', onIdentify)
  })
}
