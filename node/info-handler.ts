/**
 * Handler of /petal/1/info: one request frame `{type: 'info'}` in, one ServerInfo
 * (or error frame) out, then the stream closes.
 */
import type { StreamHandler } from '@libp2p/interface'
import type { Logger } from 'pino'
import { toErrorFrame } from '../protocol/errors.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { parseInfoRequest, type ServerInfo } from '../protocol/server-info.js'
import { FrameSender } from '../protocol/frame-sender.js'

/** Options of the info handler. */
export interface InfoHandlerInit {
  /** The server's current info (called once per request). */
  info: () => ServerInfo
  /** Simulated one-way latency of the reply, ms. */
  linkLatencyMs: number
  /** How long to wait for the request frame, ms. */
  requestTimeoutMs: number
  log: Logger
}

/**
 * Largest frame either way on an info stream. The limit bounds replies too, and a reply
 * holds a hash per served block and the addresses of known servers: 1 KiB was too small
 * for a server of 16+ blocks or 5 known servers.
 */
const MAX_INFO_FRAME_BYTES = 1 << 20

/** A stream handler answering info requests. */
export function infoHandler (init: InfoHandlerInit): StreamHandler {
  return (stream, connection) => {
    const framed = new FramedStream(stream, { limits: { maxFrameBytes: MAX_INFO_FRAME_BYTES }, maxQueuedFrames: 1 })
    answer(framed, init).catch((err: unknown) => {
      init.log.debug({ err, peer: connection.remotePeer.toString() }, 'info request failed')
      framed.abort(err as Error)
    })
  }
}

async function answer (framed: FramedStream, init: InfoHandlerInit): Promise<void> {
  const sender = new FrameSender(framed, init.linkLatencyMs)
  const request = await framed.read({ signal: AbortSignal.timeout(init.requestTimeoutMs) })
  if (request.done === true) return
  try {
    parseInfoRequest(request.value)
  } catch (err) {
    await sender.send(toErrorFrame(err))
    await framed.close()
    return
  }
  await sender.send(init.info())
  await framed.close()
}
