/**
 * Client side of /petal/1/info: ask one server for its ServerInfo. Used by
 * clients (routing, status) and by servers choosing their span.
 */
import type { AbortOptions, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { BadMessageError, errorFromFrame } from '../protocol/errors.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { PROTOCOL_INFO } from '../protocol/ids.js'
import { parseErrorFrame } from '../protocol/inference-replies.js'
import { parseServerInfo, type ServerInfo } from '../protocol/server-info.js'

/** Deadline of one info request when the caller passes no signal, ms. */
export const DEFAULT_INFO_TIMEOUT_MS = 10_000

/** Largest ServerInfo frame accepted (addresses and hashes of a big span fit easily). */
const MAX_INFO_FRAME_BYTES = 1024 * 1024

/**
 * Dials `target` (a PeerId, a multiaddr with /p2p/<id>, or either as a string) and
 * asks for its ServerInfo: one `{type: 'info'}` frame out, one frame back. Rejects
 * with the server's PetalError when it answers an error frame, BadMessageError when
 * the reply does not parse or names another peer id, and libp2p's error when the
 * peer cannot be reached. Without a signal, a 10 s deadline applies.
 */
export async function fetchServerInfo (host: Pick<Libp2p, 'dial'>, target: PeerId | Multiaddr | string, options: AbortOptions = {}): Promise<ServerInfo> {
  const signal = options.signal ?? AbortSignal.timeout(DEFAULT_INFO_TIMEOUT_MS)
  signal.throwIfAborted()
  const connection = await host.dial(toDialTarget(target), { signal })
  const stream = await connection.newStream(PROTOCOL_INFO, { signal })
  const framed = new FramedStream(stream, { limits: { maxFrameBytes: MAX_INFO_FRAME_BYTES } })
  try {
    await framed.write({ type: 'info' }, { signal })
    const reply = await framed.read({ signal })
    if (reply.done === true) throw new BadMessageError(`Peer ${connection.remotePeer.toString()} closed the info stream without a reply`)
    const value = reply.value as Record<string, unknown>
    if (value['type'] === 'error') throw errorFromFrame(parseErrorFrame(value))
    const info = parseServerInfo(value)
    if (info.peerId !== connection.remotePeer.toString()) {
      throw new BadMessageError(`Invalid serverInfo.peerId: the server is ${connection.remotePeer.toString()}, its info says ${info.peerId}`)
    }
    await framed.close({ signal }).catch(() => {})
    return info
  } catch (err) {
    framed.abort(err as Error)
    throw err
  }
}

function toDialTarget (target: PeerId | Multiaddr | string): PeerId | Multiaddr {
  if (typeof target !== 'string') return target
  return target.startsWith('/') ? multiaddr(target) : peerIdFromString(target)
}
