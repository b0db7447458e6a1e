/**
 * Handler of /petal/1/inference: one stream carries one client session.
 * `open` -> `opened`; `run` -> `result` (and pushes); `adopt` -> `adopted`; `cancel`; `close` or the end of
 * the stream frees the session. A bad frame gets an error frame with its runId and
 * code and touches nothing else; a frame that cannot even be decoded ends the stream.
 */
import type { Stream, StreamHandler } from '@libp2p/interface'
import type { Logger } from 'pino'
import { BadMessageError, toErrorFrame, UnknownSessionError } from '../protocol/errors.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { parseAdopt, parseCancel, parseClientMessage, parseClose, parseOpen, parseRun } from '../protocol/inference-requests.js'
import type { Limits } from '../protocol/limits.js'
import { FrameSender } from '../protocol/frame-sender.js'
import type { RunExecutor, SessionLink } from './run-executor.js'
import type { SessionManager } from './session-manager.js'

/** Options of the inference service. */
export interface InferenceServiceInit {
  manager: SessionManager
  executor: RunExecutor
  /** sessionId -> link, shared with the push handler. */
  links: Map<string, SessionLink>
  limits: Limits
  /** Simulated one-way latency of every frame sent to clients, ms. */
  linkLatencyMs: number
  /** Idle time before libp2p may close an inference stream, ms (libp2p's default is 120 s). */
  inactivityTimeoutMs: number
  log: Logger
}

/** The inference streams of a server: their handler, and what the server tells them when it stops. */
export class InferenceService {
  readonly #init: InferenceServiceInit
  readonly #streams = new Set<InferenceStream>()

  constructor (init: InferenceServiceInit) {
    this.#init = init
  }

  /** The stream handler to register for PROTOCOL_INFERENCE. */
  readonly handler: StreamHandler = (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const s = new InferenceStream(stream, this.#init, peer, this.#init.log.child({ peer }), () => { this.#streams.delete(s) })
    this.#streams.add(s)
  }

  /** Sends `{type: 'notice', state: 'draining'}` on every stream that holds a session. */
  notifyDraining (): void {
    for (const s of this.#streams) if (s.hasSession) s.send({ type: 'notice', state: 'draining' })
  }

  /** Frees every session and closes every stream once its queued frames are sent (at most `graceMs`). */
  async closeAll (graceMs: number): Promise<void> {
    await Promise.all([...this.#streams].map(async s => { await s.close(graceMs) }))
  }
}

/** Replies one stream may have waiting for a client that does not read: far more than a pipeline of 64 runs produces. */
const MAX_UNSENT_FRAMES = 1024
/** Bytes of replies one stream may have waiting (a few of the largest results). */
const MAX_UNSENT_BYTES = 256 * 2 ** 20

/** Roughly what a reply takes on the wire: its tensor's bytes, plus a little. */
function replyBytes (message: unknown): number {
  const data = (message as { hidden?: { data?: unknown } }).hidden?.data
  return 64 + (data instanceof Uint8Array ? data.byteLength : 0)
}

/** One client stream and the session opened on it. */
class InferenceStream {
  readonly #init: InferenceServiceInit
  readonly #log: Logger
  readonly #framed: FramedStream
  readonly #sender: FrameSender
  readonly #onGone: () => void
  /** The client's peer id: the owner of the session opened here. */
  readonly #peer: string
  #link: SessionLink | undefined
  /** Set when the client stopped reading and the stream was reset. */
  #abandoned = false

  constructor (stream: Stream, init: InferenceServiceInit, peer: string, log: Logger, onGone: () => void) {
    this.#init = init
    this.#peer = peer
    this.#log = log
    this.#onGone = onGone
    stream.inactivityTimeout = init.inactivityTimeoutMs
    this.#framed = new FramedStream(stream, {
      limits: init.limits,
      onFrame: (frame) => { this.#onFrame(frame) },
      onEnd: (err) => { this.#onEnd(err) }
    })
    this.#sender = new FrameSender(this.#framed, init.linkLatencyMs)
  }

  get hasSession (): boolean { return this.#link !== undefined }

  /**
   * Queues a frame to the client; a failure to send is only logged (the stream is going away).
   * A client that stops reading lets replies pile up here (error frames for a flood of bad
   * frames, results): past MAX_UNSENT_FRAMES or MAX_UNSENT_BYTES its session is closed and
   * the stream reset, so what a client sends never costs the server more than that.
   */
  send (message: unknown): void {
    if (this.#sender.pendingFrames >= MAX_UNSENT_FRAMES || this.#sender.pendingBytes >= MAX_UNSENT_BYTES) {
      if (!this.#abandoned) {
        this.#abandoned = true
        this.#log.warn({ unsentFrames: this.#sender.pendingFrames, unsentBytes: this.#sender.pendingBytes }, 'the client does not read its replies: closing its session')
        this.#closeSession()
        this.#framed.abort(new Error(`the client left ${this.#sender.pendingFrames} replies unread`))
      }
      return
    }
    this.#sender.send(message, replyBytes(message)).catch((err: unknown) => { this.#log.debug({ err }, 'cannot send to client') })
  }

  /** Frees the session, then closes the stream once queued frames are out (aborts after `graceMs`). */
  async close (graceMs: number): Promise<void> {
    this.#closeSession()
    const signal = AbortSignal.timeout(graceMs)
    try {
      await Promise.race([this.#sender.flushed(), new Promise((resolve) => { signal.addEventListener('abort', resolve, { once: true }) })])
      await this.#framed.close({ signal })
    } catch (err) {
      this.#framed.abort(err as Error)
    }
  }

  #onFrame (frame: unknown): void {
    const fields = frame as Record<string, unknown> // a msgpack map: FrameDecoder guarantees it
    try {
      switch (fields['type']) {
        case 'open': this.#open(parseOpen(frame)); break
        case 'run': this.#run(frame); break
        case 'adopt': this.#adopt(parseAdopt(frame)); break
        case 'cancel': {
          const cancel = parseCancel(frame)
          this.#init.manager.cancel(this.#requireLink('cancel').session, cancel.runIds, cancel.fromRunId)
          break
        }
        case 'close':
          parseClose(frame)
          this.#closeSession()
          this.#sender.flushed().then(async () => { await this.#framed.close() }).catch(() => {})
          break
        default: parseClientMessage(frame) // throws BAD_MESSAGE naming the unknown type
      }
    } catch (err) {
      const runId = fields['runId']
      this.send(toErrorFrame(err, Number.isSafeInteger(runId) && (runId as number) >= 0 ? runId as number : undefined))
    }
  }

  #open (open: ReturnType<typeof parseOpen>): void {
    if (this.#link !== undefined) throw new BadMessageError(`Cannot open a second session on this stream: session ${this.#link.session.id} is open`)
    const session = this.#init.manager.open(open.modelId, open.start, open.end, open.maxTokens, this.#peer)
    const log = this.#log.child({ sessionId: session.id })
    this.#link = { session, log, send: (message) => { this.send(message) }, progress: open.progress === true }
    this.#init.links.set(session.id, this.#link)
    log.debug({ start: open.start, end: open.end, maxTokens: open.maxTokens, progress: open.progress === true }, 'session opened')
    this.send({ type: 'opened', sessionId: session.id, start: session.start, end: session.end, maxTokens: session.maxTokens, carriesOutputs: true })
  }

  #run (frame: unknown): void {
    const run = parseRun(frame, this.#init.limits)
    const push = run.push ?? []
    this.#init.executor.submit(this.#requireLink('run'), {
      runId: run.runId, start: run.start, hidden: run.hidden, parents: run.parents, push, replyOutput: run.replyOutput,
      // the first hop of a carrying route: its input is the client's own, so nothing to carry yet
      ...(run.carry === true && push.length > 0 ? { carried: [] } : {})
    })
  }

  #adopt ({ runId, fromSessionId, length }: ReturnType<typeof parseAdopt>): void {
    const link = this.#requireLink('adopt')
    this.#init.manager.adopt(link.session, runId, fromSessionId, length, (err) => {
      link.send(err === undefined ? { type: 'adopted', runId, length } : toErrorFrame(err, runId))
    })
  }

  #requireLink (what: string): SessionLink {
    if (this.#link === undefined) throw new UnknownSessionError(`Cannot ${what}: no session is open on this stream (send open first)`)
    return this.#link
  }

  #closeSession (): void {
    const link = this.#link
    if (link === undefined) return
    this.#link = undefined
    this.#init.links.delete(link.session.id)
    this.#init.manager.close(link.session.id)
    link.log.debug('session closed')
  }

  #onEnd (err: Error | undefined): void {
    this.#closeSession()
    this.#onGone()
    if (err !== undefined) {
      this.#log.debug({ err }, 'inference stream failed')
      return
    }
    // the client closed its side: finish ours once what is queued has gone out
    this.#sender.flushed().then(async () => { await this.#framed.close() }).catch(() => {})
  }
}
