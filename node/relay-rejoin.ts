/**
 * Keeps a server that named its relay (`--listen <relay>/p2p-circuit`) listening through it.
 * libp2p drops the reservation when the connection to that relay closes (the relay restarted,
 * the NAT forgot the mapping) and, for a relay named in the listen addresses, never asks again;
 * a server on bare `/p2p-circuit` finds another relay by itself. So this looks every few
 * seconds for a named relay with no address through it, dials it, and listens through it
 * again, backing off while the relay stays away.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { PetalHost } from '../net/host.js'

export interface RejoinTiming {
  /** How often to look, ms (default 2 s). */
  checkMs?: number
  /** The longest wait between two tries at one relay, ms (default 30 s); waits double from checkMs up to it. */
  maxBackoffMs?: number
  /** How long one dial of the relay may take, ms (default 5 s). */
  dialTimeoutMs?: number
}

const NAMED_RELAY = /\/p2p\/([^/]+)\/p2p-circuit$/

/** The relays named in listen addresses: `<relay address>/p2p/<relay id>/p2p-circuit`. */
export function namedRelays (listen: readonly string[]): Multiaddr[] {
  return listen.filter(a => NAMED_RELAY.test(a)).map(a => multiaddr(a))
}

/** Starts looking after the named relays in `listen` (none: does nothing); stops with the host. */
export function keepNamedRelays (host: Pick<PetalHost, 'getMultiaddrs' | 'status' | 'addEventListener' | 'dial' | 'services'>, listen: readonly string[], log: Logger, timing: RejoinTiming = {}): void {
  const relays = namedRelays(listen)
  if (relays.length === 0) return
  const checkMs = timing.checkMs ?? 2000
  const maxBackoffMs = timing.maxBackoffMs ?? 30_000
  const dialTimeoutMs = timing.dialTimeoutMs ?? 5000
  // an address through a relay holds `/p2p/<relay id>/p2p-circuit`, whichever of its addresses the relay gave
  const state = relays.map(circuit => ({ circuit, through: `/p2p/${NAMED_RELAY.exec(circuit.toString())?.[1] ?? ''}/p2p-circuit`, waitMs: checkMs, nextTryAt: 0, trying: false }))

  const tryRelay = async (relay: typeof state[number]): Promise<void> => {
    const relayAddr = relay.circuit.decapsulate('/p2p-circuit')
    try {
      await host.dial(relayAddr, { signal: AbortSignal.timeout(dialTimeoutMs) })
      await host.services.listener.listen([relay.circuit])
      relay.waitMs = checkMs
      log.info({ relay: relayAddr.toString() }, 'listening through the relay again')
    } catch (err) {
      relay.waitMs = Math.min(relay.waitMs * 2, maxBackoffMs)
      log.debug({ relay: relayAddr.toString(), err: (err as Error).message, retryInMs: relay.waitMs }, 'relay still unreachable')
    }
    relay.nextTryAt = Date.now() + relay.waitMs
  }

  const check = (): void => {
    if (host.status !== 'started') return
    const addrs = host.getMultiaddrs().map(a => a.toString())
    for (const relay of state) {
      if (relay.trying || Date.now() < relay.nextTryAt || addrs.some(a => a.includes(relay.through))) continue
      relay.trying = true
      void tryRelay(relay).finally(() => { relay.trying = false })
    }
  }
  const timer = setInterval(check, checkMs)
  timer.unref()
  host.addEventListener('stop', () => { clearInterval(timer) }, { once: true })
}
