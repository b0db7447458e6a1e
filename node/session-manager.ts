import { randomBytes } from 'node:crypto'
import type { SpanCache } from '../model/kv-cache.js'
import { concatRows } from '../model/onnx/linear.js'
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
  /**
   * The span's compute per row of a long run, ms, as the server measured its prefill at start:
   * the first long run's pieces are cut by it (later ones by what runs took). 0 or absent: not known.
   */
  prefillMsPerRow?: number
  /** Compute per piece of a long run, ms (default PIECE_TARGET_MS); 0: every run whole. */
  pieceMs?: number
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
 * A long run (a prompt) computes in pieces of about this much compute, one compute-queue turn
 * each. onnxruntime's Node binding runs a graph on the main thread, so while a piece computes
 * the server answers nothing: not a ping (a client takes a server that does not echo for
 * frozen), not another session's run. Between pieces it answers, and other sessions' runs
 * take their turns.
 */
export const PIECE_TARGET_MS = 200

/** Fewest rows in a piece: smaller ones would waste the device on per-run overhead. */
export const MIN_PIECE_ROWS = 32

/** Rows of a piece while the span's speed is not known yet. */
const UNKNOWN_SPEED_PIECE_ROWS = 512

/** A long run reports its progress (onProgress) at most this often, ms. */
export const PROGRESS_EVERY_MS = 1000

/**
 * Extra device time per run, msPerRun + msPerRow * rows, spent idle while holding the
 * compute queue: a tiny model stands in for a big one whose runs cost that much (on a GPU,
 * roughly a fixed weight read plus a per-row share), without taking CPU from the others.
 */
export interface SimulatedCompute {
  readonly msPerRun: number
  readonly msPerRow: number
  /**
   * Main-thread time per row, ms, spent busy (blocking the event loop) right after each
   * piece's real compute: a CPU-bound bigger model, which answers nothing while it computes.
   */
  readonly busyMsPerRow?: number
  /** After this many runs (pieces), no run finishes, with the event loop free: stuck compute. */
  readonly hangAfterRuns?: number
  /** After this many runs (pieces), the main thread is held forever: a device hung inside a run. */
  readonly freezeAfterRuns?: number
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
  /** The span's compute per row of a long run, ms (an exponential average; 0: not known). */
  #msPerRow: number
  /** Runs computed under simulatedCompute, for its hangAfterRuns. */
  #simulatedRuns = 0

  constructor (init: SessionManagerInit) {
    this.#init = init
    // simulated compute stands for a slower model: its rows count as that model's
    const simulated = init.simulatedCompute
    this.#msPerRow = (init.prefillMsPerRow ?? 0) + (simulated !== undefined ? simulated.msPerRow + (simulated.busyMsPerRow ?? 0) : 0)
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

  /** The number of the batch of runs computing now (ComputeQueue.runningBatch). */
  get runningBatch (): number | undefined { return this.#queue.runningBatch }

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
   * session's budget); a cancelled run reports nothing. A long chain computes in pieces
   * (PIECE_TARGET_MS), and `onProgress` hears how many rows are done, at most once every
   * PROGRESS_EVERY_MS.
   */
  enqueue (session: ServerSession, runId: number, start: number, hidden: Float32Array, parents: readonly number[] | undefined, onDone: (err: PetalError | undefined, out?: RunOutcome) => void, onProgress?: (rowsDone: number) => void): void {
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
    const queued: QueuedRun = { session, runId, start, hidden, parents, rows: T, enqueuedAt: performance.now(), onDone, ...(onProgress !== undefined ? { onProgress } : {}), done: 0, outs: [], computeMs: 0, startedAt: 0, reportedAt: 0 }
    this.#queue.push(this.#taskOf(queued))
  }

  /** The compute-queue task that runs `q`'s next piece (all of it, for most runs). */
  #taskOf (q: QueuedRun): ComputeTask {
    const task: ComputeTask = {
      sessionId: q.session.id,
      runId: q.runId,
      enqueuedAt: q.enqueuedAt,
      run: async (signal) => { await this.#runAlone(q, signal) },
      // chains of a few rows over the same blocks may share a pass over the weights with other sessions'
      ...(q.parents === undefined && q.rows <= MAX_PACKED_ROWS ? { batchKey: `${q.session.start}:${q.session.end}` } : {})
    }
    this.#runs.set(task, q)
    return task
  }

  /** Rows of the next piece of a chain with `left` rows to go: all of them unless that is well over a piece's time. */
  #pieceRows (left: number): number {
    const pieceMs = this.#init.pieceMs ?? PIECE_TARGET_MS
    if (pieceMs === 0) return left
    const piece = this.#msPerRow > 0 ? Math.max(MIN_PIECE_ROWS, Math.floor(pieceMs / this.#msPerRow)) : UNKNOWN_SPEED_PIECE_ROWS
    return left <= 1.5 * piece ? left : piece
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

  /**
   * Computes run `q`, or its next piece: a chain longer than a piece gives up its turn after
   * each one (the rest goes back to the head of its session's queue), so the server answers
   * pings and other sessions' runs between pieces. The result goes out when the last is done.
   */
  async #runAlone (q: QueuedRun, signal: AbortSignal): Promise<void> {
    const { session, runId, start, parents, rows: T, onDone } = q
    if (!this.#ready(q)) return
    const C = this.#init.runner.config.hiddenSize
    const rows = parents === undefined ? this.#pieceRows(T - q.done) : T
    const began = performance.now()
    if (q.done === 0) q.startedAt = q.reportedAt = began
    try {
      const input = rows === T ? q.hidden : q.hidden.subarray(q.done * C, (q.done + rows) * C)
      const out = await this.#init.runner.forward(input, session.cache, start + q.done, parents === undefined ? { signal } : { signal, parents })
      const simulated = this.#init.simulatedCompute
      if (simulated !== undefined) {
        busyFor((simulated.busyMsPerRow ?? 0) * rows)
        await idle((q.done === 0 ? simulated.msPerRun : 0) + simulated.msPerRow * rows, signal)
        this.#simulatedRuns++
        if (simulated.freezeAfterRuns !== undefined && this.#simulatedRuns > simulated.freezeAfterRuns) for (;;) busyFor(1000) // frozen: never returns
        if (simulated.hangAfterRuns !== undefined && this.#simulatedRuns > simulated.hangAfterRuns) await new Promise(() => {}) // stuck: never done
      }
      if (signal.aborted) { // cancelled while its last block (or simulated time) ran: a cancelled run sends no result
        this.counters.abortedMidRun++
        if (q.done > 0 && !session.closed) session.cache.truncate(start)
        return
      }
      const now = performance.now()
      q.computeMs += now - began
      if (rows >= MIN_PIECE_ROWS) this.#msPerRow = this.#msPerRow > 0 ? 0.7 * this.#msPerRow + 0.3 * (now - began) / rows : (now - began) / rows
      q.done += rows
      q.outs.push(out)
      if (q.done < T) {
        if (q.onProgress !== undefined && now - q.reportedAt >= PROGRESS_EVERY_MS) {
          q.reportedAt = now
          q.onProgress(q.done)
        }
        // let the event loop read what arrived while the piece computed (another session's run
        // waits in the socket until then), so that it is queued before the next turn is given
        await new Promise(resolve => setImmediate(resolve))
        if (session.closed) return
        if (signal.aborted) { // cancelled meanwhile: undo the pieces done
          this.counters.abortedMidRun++
          session.cache.truncate(start)
          return
        }
        this.#queue.pushFront(this.#taskOf(q))
        return
      }
      this.counters.computed++
      onDone(undefined, { runId, start, hidden: q.outs.length === 1 ? out : concatRows(q.outs), computeMs: q.computeMs, queuedMs: q.startedAt - q.enqueuedAt })
    } catch (err) {
      if (q.done > 0 && !session.closed) session.cache.truncate(start) // the pieces before this one: undo them too
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

  /** Whether a run (or its next piece) may start now: its session is open and its cache reaches its start (else GAP). */
  #ready (q: QueuedRun): boolean {
    if (q.session.closed) return false
    const from = q.start + q.done
    if (from > q.session.cache.length) {
      q.onDone(new GapError(`Run ${q.runId} starts at ${from} but the cache ends at ${q.session.cache.length}`, q.session.cache.length))
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
    for (const task of this.#queue.cancel(t => t.sessionId === session.id && match(t.runId)).droppedTasks) {
      const q = this.#runs.get(task)
      if (q === undefined || q.done === 0) {
        this.counters.droppedBeforeStart++
      } else { // the rest of a run computed in pieces: undo the pieces done
        this.counters.abortedMidRun++
        session.cache.truncate(q.start)
      }
    }
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
  readonly onProgress?: (rowsDone: number) => void
  /** Rows computed so far (a run in pieces), and their outputs, each (1,rows,C). */
  done: number
  outs: Float32Array[]
  /** Compute time of the pieces so far, ms; when the first began, and when progress was last reported (performance.now()). */
  computeMs: number
  startedAt: number
  reportedAt: number
}

/** A failed run's error as the client gets it: a PetalError as it is, anything else INTERNAL. */
function runFailure (runId: number, err: unknown): PetalError {
  return err instanceof PetalError ? err : new PetalError('INTERNAL', `Run ${runId} failed: ${(err as Error).message}`, { cause: err })
}

/** Keeps this thread busy for `ms` (simulated compute that blocks the event loop, as onnxruntime's does). */
function busyFor (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* spin */ }
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
