import type { PeerId } from '@libp2p/interface'
import type { PetalHost } from '../../net/host.js'
import { CancelledError, errorFromFrame, PetalError, TimeoutError } from '../../protocol/errors.js'
import { FrameSender } from '../../protocol/frame-sender.js'
import { FramedStream } from '../../protocol/framed-stream.js'
import { PROTOCOL_INFERENCE } from '../../protocol/ids.js'
import { parseServerMessage, type ServerMessage } from '../../protocol/inference-replies.js'
import type { PushHop } from '../../protocol/push-message.js'
import { decodeTensor, encodeTensor, type WireDtype } from '../../protocol/tensor-codec.js'
import { listeningTimeout } from '../../net/listening-timeout.js'
import { measureRtt } from '../../net/rtt-probe.js'

/** A run waiting this long gets its server probed (SpanSessionInit.liveness). */
const LIVENESS_AFTER_MS = 2000
/** How long a probed server has to echo. */
const LIVENESS_TIMEOUT_MS = 3000
/** A watchdog tick this much later than its period follows a stall of the client's event loop. */
const STALL_MS = 100

/** The connection to a server broke (reset, closed, unreachable): fail over. */
export class ConnectionLostError extends Error {
  static readonly code = 'ERR_CONNECTION_LOST'
  readonly code = ConnectionLostError.code
  override readonly name: string = 'ConnectionLostError'
}

/** The server could not be reached at all: the dial failed (nothing listens there now). */
export class UnreachableError extends ConnectionLostError {
  override readonly name = 'UnreachableError'
}

/**
 * One ping echo from the server within `timeoutMs`: undefined when it came, else the error
 * that takes the server for frozen (`when` says what was waiting, at the time of the failure).
 */
async function pingOrBlame (init: Pick<SpanSessionInit, 'host' | 'peerId'>, timeoutMs: number, when: string | (() => string)): Promise<ConnectionLostError | undefined> {
  // time this client spent computing (its event loop held) is not the server's silence
  const timeout = listeningTimeout(timeoutMs)
  try {
    await measureRtt(init.host, init.peerId, { trips: 1, signal: timeout.signal })
    return undefined
  } catch (err) {
    const what = typeof when === 'string' ? when : when()
    return new ConnectionLostError(`${init.peerId.toString()} did not answer a ping in ${timeoutMs} ms ${what} (${(err as Error).message}): taken for frozen`)
  } finally {
    timeout.clear()
  }
}

export interface SpanSessionInit {
  host: PetalHost
  peerId: PeerId
  modelId: string
  start: number
  end: number
  /** Cache positions to reserve on the server. */
  maxTokens: number
  hiddenSize: number
  wireDtype?: WireDtype
  /** Simulated one-way latency added to every frame this client sends. */
  sendDelayMs?: number
  /**
   * Longest wait for `opened`, and for a run's result counted from the later of its send and
   * the server's last result or `progress` frame on this session (#timeOut). Default 30 s.
   */
  timeoutMs?: number
  /**
   * When a run has waited `afterMs` (default 2 s), ask the server for a ping echo; no echo in
   * `timeoutMs` (default 3 s) and the session is lost: a frozen process (SIGSTOP, a laptop
   * asleep) keeps its TCP connection open and answers nothing, which only libp2p's own
   * monitor (a ping every 10 s, 5 s or more to answer) or timeoutMs would notice. A server
   * that is only slow (a long prefill, which it computes in pieces of ~0.2 s) echoes between
   * pieces, and is waited for. false: never probe.
   */
  liveness?: { afterMs?: number, timeoutMs?: number } | false
  /**
   * An error for a run that already has its result here: the server failed to push the
   * output on (push mode). The caller fails the run's later hops at once instead of
   * waiting for their time-outs.
   */
  onPushFailure?: (runId: number, err: PetalError) => void
  signal?: AbortSignal
}

interface Pending {
  /** Rows the result must have: the run's T (0: an adoption, answered by `adopted`). */
  rows: number
  start: number
  /** Outputs of earlier hops the result must carry (expectCarried); undefined: none. */
  carried?: number
  /**
   * A run sent with a push list, or a pushed run's result awaited here: a PUSH_FAILED may end
   * it. A run sent here alone (hop by hop) cannot fail to push, so one arriving for it is a
   * stale answer to an earlier try under the same id, and is ignored.
   */
  viaPush: boolean
  resolve: (result: RunResult) => void
  reject: (err: Error) => void
  /** performance.now() when the wait began */
  since: number
}

/** A run's output at one server, and the earlier hops' outputs when the route carried them. */
export interface RunResult {
  /** (1,T,C) */
  hidden: Float32Array
  /** Each (1,T,C), in route order: only from expectCarried. */
  carried: Float32Array[]
}

/**
 * One inference session with one server over blocks [start, end): a stream that carries
 * runs out and results back. Results are matched to runs by id, so many runs can be in
 * flight; in push mode results also arrive for runs another server pushed here.
 */
export class SpanSession {
  readonly peerId: PeerId
  readonly start: number
  readonly end: number
  readonly sessionId: string
  readonly #framed: FramedStream
  readonly #writer: FrameSender
  readonly #pending = new Map<number, Pending>()
  readonly #init: SpanSessionInit
  #lost: Error | undefined
  /** Whether #lost is this side's close(), not a broken connection. */
  #closedHere = false
  /** Told once when the connection is lost (not when this side closes the session). */
  readonly #lostListeners = new Set<(cause: Error) => void>()
  readonly #idleWaiters: Array<() => void> = []
  /** Checks for overdue runs while any run waits (#watch). */
  #watchdog: ReturnType<typeof setInterval> | undefined
  /**
   * When the server last answered a run of this session or reported progress on one
   * (performance.now()). A wait counts from the later of its own start and this: a session's
   * runs compute in order, so while earlier ones come back the later ones are not overdue.
   */
  #heardAt = -Infinity
  /** The latest start of a wait that was answered: a run still waiting that began before it was overtaken. */
  #answeredSince = -Infinity
  /** When the server last echoed a probe, or a probe is out (Infinity). */
  #probedAt = -Infinity
  /** Set when the server announced it is draining. */
  draining = false
  /** The server carries outputs along push chains (`run` with carry; it said so when opened). */
  readonly carriesOutputs: boolean

  private constructor (init: SpanSessionInit, framed: FramedStream, sessionId: string, carriesOutputs: boolean) {
    this.#init = init
    this.carriesOutputs = carriesOutputs
    this.peerId = init.peerId
    this.start = init.start
    this.end = init.end
    this.sessionId = sessionId
    this.#framed = framed
    this.#writer = new FrameSender(framed, init.sendDelayMs ?? 0)
  }

  static async open (init: SpanSessionInit): Promise<SpanSession> {
    const timeoutMs = init.timeoutMs ?? 30_000
    // a frozen server would hold the open for the whole timeout: probe it as an overdue run's
    const frozen = new AbortController()
    const { liveness } = init
    const probe = liveness === false ? undefined : setTimeout(() => {
      void pingOrBlame(init, liveness?.timeoutMs ?? LIVENESS_TIMEOUT_MS, 'while opening a session').then(err => { if (err !== undefined) frozen.abort(err) })
    }, liveness?.afterMs ?? LIVENESS_AFTER_MS)
    const timeout = listeningTimeout(timeoutMs)
    try {
      return await SpanSession.#open(init, AbortSignal.any([timeout.signal, frozen.signal, ...(init.signal ? [init.signal] : [])]))
    } finally {
      clearTimeout(probe)
      timeout.clear()
    }
  }

  static async #open (init: SpanSessionInit, signal: AbortSignal): Promise<SpanSession> {
    let stream
    try {
      stream = await init.host.dialProtocol(init.peerId, PROTOCOL_INFERENCE, { signal })
    } catch (err) {
      throw new UnreachableError(`Cannot reach ${init.peerId.toString()}: ${(err as Error).message}`, { cause: err })
    }
    stream.inactivityTimeout = 10 * 60_000
    let session: SpanSession | undefined
    const opened = Promise.withResolvers<unknown>()
    signal.addEventListener('abort', () => { opened.reject(signal.reason) }, { once: true })
    const framed = new FramedStream(stream, {
      onFrame: frame => { if (session !== undefined) session.#onFrame(frame); else opened.resolve(frame) },
      onEnd: err => {
        const lost = err ?? new Error('the server closed the stream')
        if (session !== undefined) session.#onLost(lost); else opened.reject(lost)
      }
    })
    // progress: a long run's server says how far it got, and the session's waits start over (#onFrame)
    await framed.write({ type: 'open', modelId: init.modelId, start: init.start, end: init.end, maxTokens: init.maxTokens, progress: true }, { signal })
    let first: unknown
    try {
      first = await opened.promise
    } catch (err) {
      framed.abort(err as Error)
      throw new ConnectionLostError(`No session from ${init.peerId.toString()}: ${(err as Error).message}`, { cause: err })
    }
    const msg = parseServerMessage(first)
    if (msg.type === 'error') {
      framed.abort(errorFromFrame(msg))
      throw errorFromFrame(msg)
    }
    if (msg.type !== 'opened') throw new PetalError('BAD_MESSAGE', `Expected "opened" from ${init.peerId.toString()}, got "${msg.type}"`)
    if (msg.start !== init.start || msg.end !== init.end) {
      const err = new ConnectionLostError(`${init.peerId.toString()} opened blocks [${msg.start},${msg.end}) when asked for [${init.start},${init.end}): a faulty server`)
      framed.abort(err)
      throw err
    }
    session = new SpanSession(init, framed, msg.sessionId, msg.carriesOutputs === true)
    return session
  }

  get lost (): boolean { return this.#lost !== undefined }

  /** The runs waiting here and for how long, for diagnostics (a soak's stuck operation). */
  describeWaits (): string {
    const now = performance.now()
    const waits = [...this.#pending].map(([id, p]) => `${id}${p.viaPush ? ' pushed' : ''} ${Math.round(now - p.since)} ms`)
    return `${this.#lost !== undefined ? 'lost, ' : ''}waits [${waits.join(', ')}], heard ${Math.round(now - this.#heardAt)} ms ago, watchdog ${this.#watchdog !== undefined ? 'on' : 'off'}`
  }

  /**
   * Calls `listener` with the cause once the connection to the server breaks (reset, closed by
   * the server, a faulty answer), never when this side closes the session; at once when it
   * already broke. Returns the function that unsubscribes it.
   */
  onConnectionLost (listener: (cause: Error) => void): () => void {
    const lost = this.#lost
    if (lost !== undefined && !this.#closedHere) {
      queueMicrotask(() => { listener(lost) })
      return () => {}
    }
    this.#lostListeners.add(listener)
    return () => { this.#lostListeners.delete(listener) }
  }

  /**
   * Sends run `runId` for positions start.. with hidden (1,T,C); resolves with this
   * server's output (1,T,C). With `push`, the server forwards its output along the hops;
   * with `parents`, the rows are a token tree (model/token-tree.ts). With `carry` (and a
   * push) no hop replies but the last, which returns every output (expectCarried there):
   * this promise then only rejects, on this server's error or loss.
   */
  run (runId: number, start: number, hidden: Float32Array, push?: PushHop[], parents?: readonly number[], carry = false): Promise<Float32Array> {
    const T = hidden.length / this.#init.hiddenSize
    const result = this.#expect(runId, start, T, { viaPush: push !== undefined && push.length > 0 }).then(r => r.hidden)
    const msg = {
      type: 'run',
      runId,
      start,
      hidden: encodeTensor(hidden, [1, T, this.#init.hiddenSize], this.#init.wireDtype ?? 'float32'),
      ...(push !== undefined && push.length > 0 ? { push } : {}),
      ...(parents !== undefined ? { parents: [...parents] } : {}),
      ...(carry ? { carry } : {})
    }
    this.#writer.send(msg).catch(err => { this.#onLost(err as Error) })
    return result
  }

  /**
   * Makes the server's cache of this session a copy of the first `length` positions of its
   * session `fromSessionId` (this client's, over the same blocks), in order with the runs
   * sent here; resolves once done. Rejects with the server's error when it cannot (a server
   * that predates adoption answers BAD_MESSAGE): the caller then sends those positions itself.
   */
  adopt (runId: number, fromSessionId: string, length: number): Promise<void> {
    const done = this.#expect(runId, length, 0, { viaPush: false })
    this.#writer.send({ type: 'adopt', runId, fromSessionId, length }).catch(err => { this.#onLost(err as Error) })
    return done.then(() => {})
  }

  /**
   * A promise for the result of a run this server will receive (sent here, or pushed to it):
   * `rows` (T) rows from position `start`. A result of another shape means a faulty server:
   * the session is then lost, and the client moves its blocks elsewhere.
   */
  expect (runId: number, start: number, rows: number): Promise<Float32Array> {
    return this.#expect(runId, start, rows, { viaPush: true }).then(r => r.hidden)
  }

  /**
   * expect() at the last hop of a run sent with `carry`: the result must also hold the
   * outputs of the `earlierHops` hops before this one (else the server is faulty and lost).
   */
  expectCarried (runId: number, start: number, rows: number, earlierHops: number): Promise<RunResult> {
    return this.#expect(runId, start, rows, { viaPush: true, carried: earlierHops })
  }

  #expect (runId: number, start: number, rows: number, { viaPush, carried }: { viaPush: boolean, carried?: number }): Promise<RunResult> {
    if (this.#lost !== undefined) return Promise.reject(this.#lost)
    // a run sent again under its id (a push that went on hop by hop) supersedes the earlier wait
    if (this.#pending.has(runId)) this.#settle(runId, undefined, new ConnectionLostError(`Run ${runId} was sent to ${this.peerId.toString()} again`))
    return new Promise((resolve, reject) => {
      this.#pending.set(runId, { rows, start, resolve, reject, since: performance.now(), viaPush, ...(carried !== undefined ? { carried } : {}) })
      this.#watch()
    })
  }

  /** Fails the local wait for a run's result (the server is not told). */
  reject (runId: number, err: Error): void {
    this.#settle(runId, undefined, err)
  }

  /** reject(), only where the wait is for a pushed run (not for the run sent again here hop by hop). */
  rejectPushed (runId: number, err: Error): void {
    if (this.#pending.get(runId)?.viaPush === true) this.#settle(runId, undefined, err)
  }

  /** Tells the server to drop these runs; their promises reject with CancelledError. */
  cancel (runIds: readonly number[]): void {
    if (runIds.length === 0) return
    for (const id of runIds) this.#settle(id, undefined, new CancelledError(`Run ${id} was cancelled`))
    if (this.#lost === undefined) this.#writer.send({ type: 'cancel', runIds: [...runIds] }).catch(() => {})
  }

  /**
   * Ends the session. Runs still waiting here fail as lost, not cancelled: a failover closes the
   * session of a hop it replaced while other runs may wait on it, and those go on by the new route.
   */
  async close (): Promise<void> {
    if (this.#lost === undefined) {
      this.#closedHere = true
      this.#lostListeners.clear()
      this.#lost = new ConnectionLostError(`Session on ${this.peerId.toString()} closed`)
    }
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined, this.#lost)
    try {
      // bounded too: a write waits for the stream to drain, which a server that reads nothing never lets it
      const signal = AbortSignal.timeout(1000)
      await this.#framed.write({ type: 'close' }, { signal })
      await this.#framed.close({ signal })
    } catch {
      this.#framed.abort(new Error('close failed'))
    }
  }

  #onFrame (frame: unknown): void {
    let msg: ServerMessage
    try {
      msg = parseServerMessage(frame)
    } catch (err) {
      this.#onLost(err as Error)
      return
    }
    if (msg.type === 'result') {
      const pending = this.#pending.get(msg.runId)
      const [, T, C] = msg.hidden.dims
      const carried = msg.carried ?? []
      if (pending !== undefined && (pending.rows === 0 || T !== pending.rows || C !== this.#init.hiddenSize || msg.start !== pending.start || carried.length !== (pending.carried ?? 0))) {
        const carriedCounts = carried.length !== (pending.carried ?? 0) ? ` (${carried.length} carried outputs, expected ${pending.carried ?? 0})` : ''
        const err = new ConnectionLostError(`${this.peerId.toString()} answered run ${msg.runId} with dims [${msg.hidden.dims.join(', ')}] from position ${msg.start}, expected [1, ${pending.rows}, ${this.#init.hiddenSize}] from ${pending.start}${carriedCounts}: a faulty server`)
        this.#onLost(err)
        this.#framed.abort(err)
        return
      }
      // carried tensors have the dims of `hidden` (parseResult checks)
      this.#settle(msg.runId, decodeTensor(msg.hidden).data, undefined, carried.map(t => decodeTensor(t).data))
    } else if (msg.type === 'adopted') {
      const pending = this.#pending.get(msg.runId)
      if (pending !== undefined && (pending.rows !== 0 || msg.length !== pending.start)) {
        const err = new ConnectionLostError(`${this.peerId.toString()} answered run ${msg.runId} as an adoption of ${msg.length} positions, which it was not: a faulty server`)
        this.#onLost(err)
        this.#framed.abort(err)
        return
      }
      this.#settle(msg.runId, new Float32Array(0))
    } else if (msg.type === 'error') {
      const err = errorFromFrame(msg)
      const pending = msg.runId !== undefined ? this.#pending.get(msg.runId) : undefined
      if (msg.runId === undefined) this.#onLost(err)
      else if (pending === undefined) this.#init.onPushFailure?.(msg.runId, err) // answered already: its push failed
      else if (err.code !== 'PUSH_FAILED' || pending.viaPush) this.#settle(msg.runId, undefined, err)
      // else a push failure of an earlier try of a run that now goes hop by hop: nothing waits for it
    } else if (msg.type === 'notice') {
      this.draining = true
    } else if (msg.type === 'progress') {
      // the server computes a run of ours (a long one, in pieces): every wait here starts over
      if (this.#pending.has(msg.runId)) this.#heardAt = performance.now()
    }
  }

  /** Resolves once no run waits for a result here. */
  async whenIdle (): Promise<void> {
    if (this.#pending.size === 0) return
    await new Promise<void>(resolve => { this.#idleWaiters.push(resolve) })
  }

  #settle (runId: number, hidden: Float32Array | undefined, err?: Error, carried: Float32Array[] = []): void {
    const p = this.#pending.get(runId)
    if (p === undefined) return
    this.#pending.delete(runId)
    if (err === undefined) {
      this.#heardAt = performance.now()
      this.#answeredSince = Math.max(this.#answeredSince, p.since)
    }
    if (this.#pending.size === 0) {
      for (const wake of this.#idleWaiters.splice(0)) wake()
      clearInterval(this.#watchdog)
      this.#watchdog = undefined
    }
    if (err !== undefined) p.reject(err)
    else p.resolve({ hidden: hidden as Float32Array, carried })
  }

  /**
   * While runs wait, checks now and then (a quarter of the shorter of timeoutMs and the
   * liveness probe's afterMs) for waits past timeoutMs and for an overdue server to probe. One
   * timer per session, not one per run: a pipeline keeps many runs in flight. A tick right
   * after this client's event loop stalled looks again at the next one (once), when what
   * arrived meanwhile has been read.
   */
  #watch (): void {
    if (this.#watchdog !== undefined) return
    const { liveness } = this.#init
    const timeoutMs = this.#init.timeoutMs ?? 30_000
    const afterMs = liveness === false ? Infinity : liveness?.afterMs ?? LIVENESS_AFTER_MS
    const periodMs = Math.max(10, Math.min(1000, timeoutMs / 4, afterMs / 4))
    let lastTick = performance.now()
    let skipped = false
    this.#watchdog = setInterval(() => {
      // a tick that comes late follows a stall of this client's own event loop (its models
      // compute on the main thread): results may sit unread in the socket, so look next tick
      const now = performance.now()
      const stalled = now - lastTick > periodMs + STALL_MS
      lastTick = now
      if (stalled && !skipped) {
        skipped = true
        return
      }
      skipped = false
      this.#timeOut(timeoutMs)
      if (liveness !== false) this.#probeIfOverdue(afterMs, liveness?.timeoutMs ?? LIVENESS_TIMEOUT_MS)
    }, periodMs)
    this.#watchdog.unref()
  }

  /**
   * Fails the runs that heard nothing for `timeoutMs` (counted from the later of their start
   * and the server's last word on this session), and those that waited that long while a run
   * sent after them was answered (overtaken: the server has lost them).
   */
  #timeOut (timeoutMs: number): void {
    const now = performance.now()
    for (const [runId, p] of [...this.#pending]) {
      const silent = now - Math.max(p.since, this.#heardAt) >= timeoutMs
      const overtaken = now - p.since >= timeoutMs && this.#answeredSince > p.since
      if (!silent && !overtaken) continue
      this.#settle(runId, undefined, new TimeoutError(`Run ${runId} got no result from ${this.peerId.toString()} in ${timeoutMs} ms${silent ? '' : ', while later runs did'}`))
    }
  }

  /** Probes the server when its oldest waiting run is overdue and it has not echoed since; no echo: lost. */
  #probeIfOverdue (afterMs: number, timeoutMs: number): void {
    const now = performance.now()
    if (this.#lost !== undefined || now - this.#probedAt < afterMs) return
    let oldest: [number, Pending] | undefined
    for (const entry of this.#pending) if (oldest === undefined || entry[1].since < oldest[1].since) oldest = entry
    if (oldest === undefined || now - Math.max(oldest[1].since, this.#heardAt) < afterMs) return
    const [runId, { since }] = oldest
    this.#probedAt = Infinity
    void pingOrBlame(this.#init, timeoutMs, () => `while run ${runId} waited ${Math.round(performance.now() - since)} ms`).then(lost => {
      if (lost === undefined) {
        this.#probedAt = performance.now()
      } else if (this.#lost === undefined && this.#pending.size > 0) {
        this.#onLost(lost)
        this.#framed.abort(lost) // should it wake up, its session ends
      }
    })
  }

  #onLost (err: Error): void {
    if (this.#lost !== undefined) return
    this.#lost = err instanceof PetalError ? err : new ConnectionLostError(`Lost ${this.peerId.toString()}: ${err.message}`, { cause: err })
    for (const listener of this.#lostListeners) listener(this.#lost)
    this.#lostListeners.clear()
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined, this.#lost)
  }
}
