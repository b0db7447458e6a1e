/**
 * Handler of /petal/1/info: one request frame `{type: 'info'}` in, one ServerInfo
 * (or error frame) out, then the stream closes.
 */
import type { StreamHandler } from '@libp2p/interface'
import type { Logger } from 'pino'
import { toErrorFrame } from '../protocol/errors.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { parseInfoRequest, type ServerInfo } from '../protocol/server-info.js'
import { FrameSender } from './frame-sender.js'

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

/** Largest info request accepted: it is one tiny map. */
const MAX_REQUEST_BYTES = 1024

/** A stream handler answering info requests. */
export function infoHandler (init: InfoHandlerInit): StreamHandler {
  return (stream, connection) => {
    const framed = new FramedStream(stream, { limits: { maxFrameBytes: MAX_REQUEST_BYTES }, maxQueuedFrames: 1 })
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
