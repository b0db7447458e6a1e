/**
 * Handler of /petal/1/push (server -> server): each frame is a previous server's
 * output for a session that a client opened here. It runs as a run of that session;
 * its result goes back to the client over the session's own inference stream, then
 * on to the next hop. A push for an unknown session is dropped with a log line.
 */
import type { StreamHandler } from '@libp2p/interface'
import type { Logger } from 'pino'
import { FramedStream } from '../protocol/framed-stream.js'
import type { Limits } from '../protocol/limits.js'
import { parsePush } from '../protocol/push-message.js'
import { toErrorFrame } from '../protocol/errors.js'
import type { RunExecutor, SessionLink } from './run-executor.js'

/** Options of the push handler. */
export interface PushHandlerInit {
  executor: RunExecutor
  /** sessionId -> link to the client that opened it. */
  links: ReadonlyMap<string, SessionLink>
  limits: Limits
  /** Idle time before libp2p may close a push stream, ms. */
  inactivityTimeoutMs: number
  log: Logger
}

/** Error frames a push stream may have waiting for a sender that does not read them. */
const MAX_UNSENT_ERRORS = 256

/** A stream handler for incoming pushes; one stream per previous server, reused for all its pushes. */
export function pushHandler (init: PushHandlerInit): StreamHandler {
  return (stream, connection) => {
    stream.inactivityTimeout = init.inactivityTimeoutMs
    const log = init.log.child({ from: connection.remotePeer.toString() })
    // error frames not yet handed to the transport: a sender that does not read lets them pile up
    let unsent = 0
    let invalid = 0
    let unknown = 0
    const framed: FramedStream = new FramedStream(stream, {
      limits: init.limits,
      onFrame: (frame) => {
        let push
        try {
          push = parsePush(frame, init.limits)
        } catch (err) {
          // a server bug, not a client's: tell the sender (it logs it) and keep the stream; warn
          // once per stream (a flood of them is the sender's problem, not the log's)
          if (invalid++ === 0) log.warn({ err }, 'invalid push dropped')
          else log.debug({ err }, 'invalid push dropped')
          if (unsent >= MAX_UNSENT_ERRORS) {
            framed.abort(new Error(`the sender left ${unsent} error frames unread`))
            return
          }
          unsent++
          framed.write(toErrorFrame(err)).catch(() => {}).finally(() => { unsent-- })
          return
        }
        const link = init.links.get(push.sessionId)
        if (link === undefined) {
          // normal when a session just closed; logged at info once per stream
          if (unknown++ === 0) log.info({ sessionId: push.sessionId, runId: push.runId }, 'push for an unknown session dropped')
          else log.debug({ sessionId: push.sessionId, runId: push.runId }, 'push for an unknown session dropped')
          return
        }
        // carrying, this hop's input (the sender's output) joins the outputs it passes on
        const carried = push.carried !== undefined ? { carried: [...push.carried, push.hidden] } : {}
        init.executor.submit(link, { runId: push.runId, start: push.start, hidden: push.hidden, parents: push.parents, push: push.push, replyOutput: true, ...carried })
      },
      onEnd: (err) => {
        if (err !== undefined) log.debug({ err }, 'push stream failed')
        else framed.close().catch(() => {})
      }
    })
  }
}
