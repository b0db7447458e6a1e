/**
 * Round-trip time to a peer, measured on one stream of libp2p's ping protocol (the remote
 * echoes every chunk until the stream ends). libp2p's own `ping()` opens a new stream per
 * ping, so its time includes the stream's protocol negotiation, another round trip: about
 * twice the RTT. Here the stream is opened first and only the echoes are timed.
 */
import type { AbortOptions, Connection, PeerId } from '@libp2p/interface'

/** libp2p's ping protocol id and payload size. */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_BYTES = 32

export interface RttProbeOptions extends AbortOptions {
  /** Echoes timed; the best is the RTT (default 2). */
  trips?: number
  /**
   * Pause between echoes, ms (default 0). A process that just started is busy (compiling,
   * dialing, parsing): echoes spread over time are less likely to all meet a busy moment.
   */
  gapMs?: number
}

/** What the probe needs of a libp2p node. */
export interface RttProbeHost {
  dial: (peer: PeerId, options?: AbortOptions) => Promise<Connection>
}

/** The best of `trips` echo round trips to `peer`, in ms with sub-ms precision. */
export async function measureRtt (host: RttProbeHost, peer: PeerId, options: RttProbeOptions = {}): Promise<number> {
  const { signal } = options
  const trips = Math.max(1, options.trips ?? 2)
  const connection = await host.dial(peer, { signal })
  const stream = await connection.newStream(PING_PROTOCOL, { signal })
  let waiting: { need: number, resolve: () => void } | undefined
  let received = 0
  stream.addEventListener('message', (evt: { data: { byteLength: number } }) => { // Uint8Array or Uint8ArrayList
    received += evt.data.byteLength
    if (waiting !== undefined && received >= waiting.need) waiting.resolve()
  })
  let onAbort: (() => void) | undefined
  const closed = new Promise<never>((_resolve, reject) => {
    stream.addEventListener('close', () => { reject(new Error(`Peer ${peer.toString()} closed the ping stream`)) })
    onAbort = () => { reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
  closed.catch(() => {}) // observed by the race below; after the last trip nobody listens
  try {
    let best = Number.POSITIVE_INFINITY
    for (let trip = 1; trip <= trips; trip++) {
      if (trip > 1 && (options.gapMs ?? 0) > 0) await new Promise(resolve => setTimeout(resolve, options.gapMs))
      const echoed = new Promise<void>(resolve => { waiting = { need: trip * PING_BYTES, resolve } })
      const sent = performance.now()
      stream.send(crypto.getRandomValues(new Uint8Array(PING_BYTES)))
      await Promise.race([echoed, closed])
      best = Math.min(best, performance.now() - sent)
    }
    await stream.close({ signal }).catch(() => {})
    return best
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
  }
}
