import { randomBytes } from 'node:crypto'
import type { SpanCache } from '../model/kv-cache.js'
import type { SpanRunner } from '../model/span-runner.js'
import { runLayout } from '../model/token-tree.js'
import {
  CacheLimitError, DrainingError, GapError, PetalError, SessionLimitError, TooLargeError, UnknownSessionError, WrongSpanError
} from '../protocol/errors.js'
import type { ServerMetrics } from '../protocol/server-info.js'
import { ComputeQueue, type ComputeTask } from './compute-queue.js'

/** Options of a SessionManager. */
export interface SessionManagerInit {
  modelId: string
  runner: SpanRunner
  /** Most sessions open at once. */
  maxSessions: number
  /** Cache positions reserved by all open sessions together (each reserves its maxTokens). */
  cacheTokens: number
  /** Benchmarks: idle device time each run holds the queue for, after its real compute. */
  simulatedCompute?: SimulatedCompute
  /** Most runs one session may have waiting; more are refused with TOO_LARGE (default 64). */
  maxQueuedRunsPerSession?: number
  /**
   * Most sessions' runs computed together in one pass over the weights (default 8; 1: each
   * run alone). Only chains of at most MAX_PACKED_ROWS rows over the same blocks are packed,
   * and only while the caches they read together stay small next to the weights.
   */
  maxBatch?: number
}

/** Default of SessionManagerInit.maxBatch. */
export const DEFAULT_MAX_BATCH = 8

/** Runs longer than this (prefill) run alone: they gain little from sharing a pass over the weights. */
export const MAX_PACKED_ROWS = 16

/**
 * Runs one session may have waiting by default. A client keeps a few runs in flight per
 * server (a pipeline of speculative runs, pushes from the previous server); far more is a
 * client that floods, whose runs would only hold memory.
 */
export const DEFAULT_MAX_QUEUED_RUNS_PER_SESSION = 64

/**
 * Extra device time per run, msPerRun + msPerRow * rows, spent idle while holding the
 * compute queue: a tiny model stands in for a big one whose runs cost that much (on a GPU,
 * roughly a fixed weight read plus a per-row share), without taking CPU from the others.
 */
export interface SimulatedCompute {
  readonly msPerRun: number
  readonly msPerRow: number
}

/** What the server reports about a finished run. */
export interface RunOutcome {
  readonly runId: number
  readonly start: number
  /** (1,T,C) */ readonly hidden: Float32Array
  readonly computeMs: number
  readonly queuedMs: number
}

/** One client's session: the KV cache of its blocks and what it has asked to cancel. */
export interface ServerSession {
  readonly id: string
  readonly start: number
  readonly end: number
  readonly maxTokens: number
  readonly cache: SpanCache
  /** Peer id of the client that opened it: only its own sessions may adopt from it. */
  readonly owner: string
  /** Run ids cancelled before they arrived or started: late arrivals are dropped. */
  readonly cancelled: Set<number>
  /** Set when the client closed or went away. */
  closed: boolean
}

/** Counters the tests and `status` read: proof of what early cancellation saved. */
export interface RunCounters {
  computed: number
  /** Runs computed in a batch with other sessions' runs (SpanRunner.forwardPacked). */
  batched: number
  droppedBeforeStart: number
  abortedMidRun: number
  droppedLate: number
  failed: number
  refused: number
  /** Adoptions done: sessions that took another's prefix as a copy instead of computing it. */
  adopted: number
}

const MAX_REMEMBERED_CANCELS = 4096

/**
 * Sessions, their caches and the one compute queue of a server. Limits are checked here,
 * at the boundary, so that nothing a client sends can crash the node or touch another
 * session's cache.
 */
export class SessionManager {
  readonly #init: SessionManagerInit
  readonly #sessions = new Map<string, ServerSession>()
  readonly #queue: ComputeQueue
  readonly counters: RunCounters = { computed: 0, batched: 0, droppedBeforeStart: 0, abortedMidRun: 0, droppedLate: 0, failed: 0, refused: 0, adopted: 0 }
  /** What each queued task runs, for batches. */
  readonly #runs = new WeakMap<ComputeTask, QueuedRun>()
  #draining = false

  constructor (init: SessionManagerInit) {
    this.#init = init
    const maxPackedPast = init.runner.maxPackedPositions
    this.#queue = new ComputeQueue({
      maxBatch: init.simulatedCompute === undefined ? Math.min(init.maxBatch ?? DEFAULT_MAX_BATCH, init.runner.packLimit) : 1,
      runBatch: async (tasks, signals) => { await this.#runBatch(tasks, signals) },
      canJoin: (batch, task) => [...batch, task].reduce((n, t) => n + (this.#runs.get(t)?.start ?? 0), 0) <= maxPackedPast
    })
  }

  /** Sessions open now. */
  get openSessions (): number { return this.#sessions.size }
  /** Runs waiting to start, all sessions together. */
  get queuedRuns (): number { return this.#queue.length }
  /** True while a run computes or waits. */
  get busy (): boolean { return this.#queue.busy }

  /** The counters as ServerInfo reports them. */
  get metrics (): ServerMetrics {
    const c = this.counters
    return { runsComputed: c.computed, runsDroppedBeforeStart: c.droppedBeforeStart, runsAbortedMidRun: c.abortedMidRun, runsDroppedLate: c.droppedLate, runsRefused: c.refused, queuedRuns: this.#queue.length, runsBatched: c.batched, prefixesAdopted: c.adopted }
  }

  /** Resolves once no run computes or waits. */
  async whenIdle (): Promise<void> {
    await this.#queue.whenIdle()
  }

  /** Cache positions not yet reserved by open sessions. */
  get freeCacheTokens (): number {
    let used = 0
    for (const s of this.#sessions.values()) used += s.maxTokens
    return Math.max(0, this.#init.cacheTokens - used)
  }

  /**
   * Opens a session over blocks [start, end) with `maxTokens` cache positions reserved, for
   * the client `owner`. Throws DRAINING, WRONG_SPAN (model id or span), SESSION_LIMIT or CACHE_LIMIT.
   */
  open (modelId: string, start: number, end: number, maxTokens: number, owner = ''): ServerSession {
    const { runner } = this.#init
    if (this.#draining) throw new DrainingError('Cannot open a session: the server is draining')
    if (modelId !== this.#init.modelId) throw new WrongSpanError(`Cannot open a session for model "${modelId}": this server serves "${this.#init.modelId}"`)
    if (!runner.canServe(start, end)) throw new WrongSpanError(`Cannot open a session for blocks [${start}, ${end}): this server holds [${runner.start}, ${runner.end})`)
    if (this.#sessions.size >= this.#init.maxSessions) throw new SessionLimitError(`Cannot open a session: ${this.#sessions.size} of ${this.#init.maxSessions} are open`)
    if (maxTokens > this.freeCacheTokens) throw new CacheLimitError(`Cannot reserve ${maxTokens} cache positions: ${this.freeCacheTokens} are free`)
    const session: ServerSession = { id: randomBytes(12).toString('hex'), start, end, maxTokens, cache: runner.newCache(start, end), owner, cancelled: new Set(), closed: false }
    this.#sessions.set(session.id, session)
    return session
  }

  /** The open session `sessionId`; UNKNOWN_SESSION when there is none. */
  get (sessionId: string): ServerSession {
    const s = this.#sessions.get(sessionId)
    if (s === undefined) throw new UnknownSessionError(`No session ${sessionId} on this server`)
    return s
  }

  /** Closes a session: drops its queued runs, stops its running one, frees its cache. */
  close (sessionId: string): void {
    const s = this.#sessions.get(sessionId)
    if (s === undefined) return
    s.closed = true
    this.#sessions.delete(sessionId)
    s.cache.dispose()
    this.#queue.cancel(t => t.sessionId === sessionId)
    this.#queue.forget(sessionId)
  }

  /**
   * Queues a run. `onDone` gets the output, or an error whose code says why (GAP when the
   * run starts beyond the cache's end at the time it executes, CACHE_LIMIT past the
   * session's budget); a cancelled run reports nothing.
   */
  enqueue (session: ServerSession, runId: number, start: number, hidden: Float32Array, parents: readonly number[] | undefined, onDone: (err: PetalError | undefined, out?: RunOutcome) => void): void {
    if (session.cancelled.has(runId)) {
      this.counters.droppedLate++
      return
    }
    const T = hidden.length / this.#init.runner.config.hiddenSize
    // a tree's rows may sit at the same positions: what counts is the last position used
    const end = parents === undefined ? start + T : Math.max(...runLayout(start, T, parents).positions) + 1
    if (end > session.maxTokens) {
      onDone(new CacheLimitError(`Cannot run positions [${start}, ${end}): the session reserved ${session.maxTokens}`))
      return
    }
    const full = this.#queueFull(session, `run ${runId}`)
    if (full !== undefined) return onDone(full)
    const queued: QueuedRun = { session, runId, start, hidden, parents, rows: T, enqueuedAt: performance.now(), onDone }
    const task: ComputeTask = {
      sessionId: session.id,
      runId,
      enqueuedAt: queued.enqueuedAt,
      run: async (signal) => { await this.#runAlone(queued, signal) },
      // chains of a few rows over the same blocks may share a pass over the weights with other sessions'
      ...(parents === undefined && T <= MAX_PACKED_ROWS ? { batchKey: `${session.start}:${session.end}` } : {})
    }
    this.#runs.set(task, queued)
    this.#queue.push(task)
  }

  /**
   * Queues an adoption: when its turn comes, `session`'s cache becomes a copy of the first
   * `length` positions of session `fromSessionId`'s (the same client's, over the same blocks).
   * It runs in order with the session's runs, so a run sent after it sees the copy. `onDone`
   * gets undefined, or UNKNOWN_SESSION (no such session of this client), WRONG_SPAN (other
   * blocks), CACHE_LIMIT (past the session's budget) or GAP (the source holds fewer positions).
   */
  adopt (session: ServerSession, runId: number, fromSessionId: string, length: number, onDone: (err: PetalError | undefined) => void): void {
    if (session.cancelled.has(runId)) {
      this.counters.droppedLate++
      return
    }
    const source = this.#sessions.get(fromSessionId)
    // another client's session id is answered as an unknown one: nothing says it exists
    if (source === undefined || source.owner !== session.owner) return onDone(new UnknownSessionError(`Cannot adopt from session ${fromSessionId}: no such session of this client on this server`))
    if (source.start !== session.start || source.end !== session.end) return onDone(new WrongSpanError(`Cannot adopt from a session over blocks [${source.start}, ${source.end}) into one over [${session.start}, ${session.end})`))
    if (length > session.maxTokens) return onDone(new CacheLimitError(`Cannot adopt ${length} positions: the session reserved ${session.maxTokens}`))
    const full = this.#queueFull(session, `adoption ${runId}`)
    if (full !== undefined) return onDone(full)
    const task: ComputeTask = {
      sessionId: session.id,
      runId,
      enqueuedAt: performance.now(),
      run: async () => {
        if (session.closed) return
        if (source.closed) return onDone(new UnknownSessionError(`Cannot adopt from session ${fromSessionId}: it closed`))
        if (source.cache.length < length) return onDone(new GapError(`Cannot adopt ${length} positions: session ${fromSessionId} holds ${source.cache.length}`, source.cache.length))
        try {
          session.cache.copyPrefix(source.cache, length)
        } catch (err) {
          return onDone(runFailure(runId, err))
        }
        this.counters.adopted++
        onDone(undefined)
      }
    }
    this.#queue.push(task)
  }

  /** TOO_LARGE (counted as refused) when the session already has the most runs waiting, else undefined. */
  #queueFull (session: ServerSession, what: string): TooLargeError | undefined {
    const maxQueued = this.#init.maxQueuedRunsPerSession ?? DEFAULT_MAX_QUEUED_RUNS_PER_SESSION
    if (this.#queue.queuedFor(session.id) < maxQueued) return undefined
    this.counters.refused++
    return new TooLargeError(`Cannot queue ${what}: the session already has ${maxQueued} runs waiting`)
  }

  async #runAlone (q: QueuedRun, signal: AbortSignal): Promise<void> {
    const { session, runId, start, hidden, parents, rows: T, onDone } = q
    if (!this.#ready(q)) return
    const began = performance.now()
    try {
      const out = await this.#init.runner.forward(hidden, session.cache, start, parents === undefined ? { signal } : { signal, parents })
      const simulated = this.#init.simulatedCompute
      if (simulated !== undefined) await idle(simulated.msPerRun + simulated.msPerRow * T, signal)
      if (signal.aborted) { // cancelled while its last block (or simulated time) ran: a cancelled run sends no result
        this.counters.abortedMidRun++
        return
      }
      this.counters.computed++
      onDone(undefined, { runId, start, hidden: out, computeMs: performance.now() - began, queuedMs: began - q.enqueuedAt })
    } catch (err) {
      if (signal.aborted) {
        this.counters.abortedMidRun++
        return
      }
      this.counters.failed++
      onDone(runFailure(runId, err))
    }
  }

  /**
   * Runs of several sessions in one pass (SpanRunner.forwardPacked). A run cancelled meanwhile
   * is computed with the others but sends nothing, and its cache is rolled back to its start.
   */
  async #runBatch (tasks: readonly ComputeTask[], signals: readonly AbortSignal[]): Promise<void> {
    const ready = tasks.flatMap((t, i) => {
      const q = this.#runs.get(t)
      return q !== undefined && this.#ready(q) ? [{ q, signal: signals[i] as AbortSignal }] : []
    })
    if (ready.length === 1) return await this.#runAlone(ready[0]?.q as QueuedRun, ready[0]?.signal as AbortSignal)
    if (ready.length === 0) return
    const began = performance.now()
    let outs: Float32Array[]
    try {
      outs = await this.#init.runner.forwardPacked(ready.map(({ q }) => ({ hidden: q.hidden, cache: q.session.cache, position: q.start })))
    } catch (err) {
      for (const { q, signal } of ready) {
        if (signal.aborted) { this.counters.abortedMidRun++; continue }
        this.counters.failed++
        q.onDone(runFailure(q.runId, err))
      }
      return
    }
    const computeMs = performance.now() - began
    for (const [i, { q, signal }] of ready.entries()) {
      if (signal.aborted || q.session.closed) {
        this.counters.abortedMidRun++
        if (!q.session.closed) q.session.cache.truncate(q.start)
        continue
      }
      this.counters.computed++
      this.counters.batched++
      q.onDone(undefined, { runId: q.runId, start: q.start, hidden: outs[i] as Float32Array, computeMs, queuedMs: began - q.enqueuedAt })
    }
  }

  /** Whether a run may start now: its session is open and its cache reaches its start (else GAP). */
  #ready (q: QueuedRun): boolean {
    if (q.session.closed) return false
    if (q.start > q.session.cache.length) {
      q.onDone(new GapError(`Run ${q.runId} starts at ${q.start} but the cache ends at ${q.session.cache.length}`, q.session.cache.length))
      return false
    }
    return true
  }

  /** Cancels runs of a session: queued ones never run, a running one stops between blocks, late ones are dropped. */
  cancel (session: ServerSession, runIds: readonly number[], fromRunId?: number): void {
    for (const id of runIds) session.cancelled.add(id)
    if (session.cancelled.size > MAX_REMEMBERED_CANCELS) {
      const oldest = [...session.cancelled].slice(0, session.cancelled.size - MAX_REMEMBERED_CANCELS)
      for (const id of oldest) session.cancelled.delete(id)
    }
    const match = (runId: number): boolean => session.cancelled.has(runId) || (fromRunId !== undefined && runId >= fromRunId)
    this.counters.droppedBeforeStart += this.#queue.cancel(t => t.sessionId === session.id && match(t.runId)).dropped
  }

  /** Refuses new sessions from now on; open ones may finish. */
  drain (): ServerSession[] {
    this.#draining = true
    return [...this.#sessions.values()]
  }
}

/** A run waiting in the compute queue, and where its outcome goes. */
interface QueuedRun {
  readonly session: ServerSession
  readonly runId: number
  readonly start: number
  /** (1,T,C) */ readonly hidden: Float32Array
  readonly parents: readonly number[] | undefined
  readonly rows: number
  readonly enqueuedAt: number
  readonly onDone: (err: PetalError | undefined, out?: RunOutcome) => void
}

/** A failed run's error as the client gets it: a PetalError as it is, anything else INTERNAL. */
function runFailure (runId: number, err: unknown): PetalError {
  return err instanceof PetalError ? err : new PetalError('INTERNAL', `Run ${runId} failed: ${(err as Error).message}`, { cause: err })
}

/** Resolves after `ms`, or at once when `signal` aborts. */
async function idle (ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done)
  })
}
