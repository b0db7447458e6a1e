import { yamux } from '@chainsafe/libp2p-yamux'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

type YamuxInit = Parameters<typeof yamux>[0]

/** The muxer's stream constructor (a method of js-yamux's muxer, not its API). */
type NewStream = (streamId: number, state: StreamState, direction: 'inbound' | 'outbound') => unknown

/**
 * yamux(), with a stream's window update sent once half of its receive window is used, as
 * hashicorp's reference yamux does, instead of after every data frame.
 *
 * js-yamux answers every data frame with a window update. Petal's frames are small (a 1-token
 * run of a 64-wide model is 300 bytes), so every run and every result brought an update the
 * other way: one more encrypted message, socket write and wake-up of the peer each time, and
 * a server wrote its update before it started the run's compute. With the 256 KiB window an
 * update now goes out about every 128 KiB, and the sender never waits for one while half of
 * its window is left.
 *
 * Streams that still owe their peer a SYN or ACK flag, and paused ones, keep js-yamux's own
 * rule. If a version of js-yamux names these internals otherwise, its streams are left alone.
 */
export function lazyWindowYamux (init?: YamuxInit): ReturnType<typeof yamux> {
  const makeYamux = yamux(init)
  return () => {
    const factory = makeYamux()
    const createStreamMuxer = factory.createStreamMuxer.bind(factory)
    factory.createStreamMuxer = (maConn) => {
      const muxer = createStreamMuxer(maConn)
      const internals = muxer as unknown as { _newStream?: NewStream }
      const newStream = internals._newStream?.bind(muxer)
      if (newStream !== undefined) internals._newStream = (id, state, direction) => withLazyWindowUpdates(newStream(id, state, direction))
      return muxer
    }
    return factory
  }
}

/** States in which js-yamux sends a window update with no flags, the only ones made lazy. */
const SETTLED = new Set([StreamState.SYNSent, StreamState.Established])

/** Private fields of js-yamux's stream that the rule reads. */
interface ReceiveWindow { recvWindow: number, recvWindowCapacity: number }

/** Skips the stream's window updates while at least half of its receive window is left. */
export function withLazyWindowUpdates<S> (stream: S): S {
  if (!(stream instanceof YamuxStream)) return stream
  const window = stream as unknown as Partial<ReceiveWindow>
  if (typeof window.recvWindow !== 'number' || typeof window.recvWindowCapacity !== 'number') return stream
  const eager = stream.sendWindowUpdate.bind(stream)
  stream.sendWindowUpdate = () => {
    if (SETTLED.has(stream.state) && (window.recvWindowCapacity as number) >= (window.recvWindow as number) / 2) return
    eager()
  }
  return stream
}
