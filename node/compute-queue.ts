/** One unit of work for the accelerator: a run of one session. */
export interface ComputeTask {
  readonly sessionId: string
  readonly runId: number
  readonly enqueuedAt: number
  /** Does the work alone; `signal` aborts between blocks when the run is cancelled mid-way. */
  run: (signal: AbortSignal) => Promise<void>
  /** Tasks of different sessions with the same key may run together (ComputeQueueInit.runBatch); none: always alone. */
  readonly batchKey?: string
}

/** How a ComputeQueue batches; by default it does not. */
export interface ComputeQueueInit {
  /** Most tasks in one batch (default 1: every task alone). */
  maxBatch?: number
  /** Runs a batch of two or more tasks; each has its own signal (a cancelled one's output is dropped). */
  runBatch?: (tasks: ComputeTask[], signals: AbortSignal[]) => Promise<void>
  /** Whether `task` may join `batch` besides sharing its key (what they carry together); default yes. */
  canJoin?: (batch: readonly ComputeTask[], task: ComputeTask) => boolean
}

interface Lane {
  tasks: ComputeTask[]
  /** The turn it last started a task in (0: never). */
  lastTurn: number
  /** The batch key of its last task, and when that task finished (performance.now()). */
  lastKey?: string
  lastDoneAt: number
  /** When its last task was pushed, and the time between its last two pushes while idle (ms; 0: not known yet). */
  lastPushAt: number
  cycleMs: number
}

/** Longest a batch waits for sessions whose last run finished moments ago (ms), and its share of a run's duration. */
const MAX_HOLD_MS = 2
const HOLD_SHARE_OF_RUN = 0.25
/**
 * Longest a batch waits for a session whose next run is due by its own rhythm (ms), and its
 * share of a run: sessions whose runs go through other servers between two here come back a
 * run apart, and without waiting that long they would never meet again.
 */
const MAX_DUE_HOLD_MS = 20
const DUE_HOLD_SHARE_OF_RUN = 1.5

/**
 * Runs tasks one batch at a time (one model, one device: running two at once only makes both
 * slower), taking turns between sessions: each session's runs keep their order, and the
 * next run comes from the session that waited longest for a turn, so a client that queues
 * hundreds of runs delays another client by at most one run. Other sessions' next tasks with
 * the same batch key join it, oldest turn first, at most one per session (a session's next
 * run needs its previous one's cache). Queued tasks can be removed before they start, which
 * is what makes cancellation early: a cancelled run that had not started is never computed.
 *
 * Sessions decoding in lockstep would never meet in a batch: the first run to arrive at an
 * idle queue starts at once, the other's waits a whole run, and so on, turn by turn. So a
 * batch that could have been joined by sessions whose last run (of the same key) finished
 * moments ago, and who will likely send their next any moment, waits for them a little: a
 * quarter of a run's duration, at most 2 ms. Sessions whose runs pass through other servers
 * in between come back a run or more apart; a batch waits for those whose next run is due by
 * their rhythm (the time between their runs) within one and a half runs' duration, at most 20 ms, so that
 * once they have met they stay together. A session decoding alone never waits.
 */
export class ComputeQueue {
  readonly #init: ComputeQueueInit
  readonly #lanes = new Map<string, Lane>()
  #turns = 0
  #length = 0
  #running: Array<{ task: ComputeTask, abort: AbortController }> = []
  #idleWaiters: Array<() => void> = []
  /** A batch waiting for the sessions named: starts when they have all sent a run, or at the timer. */
  #holding: { timer: NodeJS.Timeout, expected: Lane[] } | undefined
  /** Recent runs' duration (ms), an exponential average. */
  #runMs = 0
  /** Batches started so far: the running one's number. */
  #batches = 0

  constructor (init: ComputeQueueInit = {}) {
    this.#init = init
  }

  /** Tasks waiting to start (not counting running ones). */
  get length (): number { return this.#length }

  /** Tasks of one session waiting to start. */
  queuedFor (sessionId: string): number { return this.#lanes.get(sessionId)?.tasks.length ?? 0 }

  /** The number of the batch computing now (each batch gets a new one); undefined when none is. */
  get runningBatch (): number | undefined { return this.#running.length > 0 ? this.#batches : undefined }

  /** True while tasks run or wait. */
  get busy (): boolean { return this.#running.length > 0 || this.#length > 0 }

  /** Resolves once no task runs or waits (at once when idle already). */
  async whenIdle (): Promise<void> {
    if (!this.busy) return
    await new Promise<void>(resolve => { this.#idleWaiters.push(resolve) })
  }

  /** Queues a task after its session's others; it starts at once when nothing runs. */
  push (task: ComputeTask): void {
    const now = performance.now()
    const lane = this.#lanes.get(task.sessionId)
    if (lane === undefined) {
      this.#lanes.set(task.sessionId, { tasks: [task], lastTurn: 0, lastDoneAt: -Infinity, lastPushAt: now, cycleMs: 0 })
    } else {
      // the rhythm of a session sending one run at a time (runs queued behind others say nothing of it)
      if (lane.tasks.length === 0) lane.cycleMs = now - lane.lastPushAt
      lane.lastPushAt = now
      lane.tasks.push(task)
    }
    this.#length++
    const holding = this.#holding
    if (holding !== undefined && holding.expected.every(l => l.tasks.length > 0)) {
      clearTimeout(holding.timer)
      this.#holding = undefined
    }
    this.#pump()
  }

  /**
   * Queues the rest of a task that gave up its turn (a long run between two pieces) at the head
   * of its session's lane: the session's later tasks stay behind it, and sessions waiting for a
   * turn go first. It says nothing of the session's rhythm (ComputeQueue's batch holds).
   */
  pushFront (task: ComputeTask): void {
    const lane = this.#lanes.get(task.sessionId)
    if (lane === undefined) return this.push(task)
    lane.tasks.unshift(task)
    this.#length++
    this.#pump()
  }

  /**
   * Removes queued tasks that match and aborts running ones that match;
   * returns the queued tasks dropped before they started (`dropped`: how many).
   */
  cancel (match: (t: ComputeTask) => boolean): { dropped: number, droppedTasks: ComputeTask[], abortedRunning: boolean } {
    const droppedTasks: ComputeTask[] = []
    for (const lane of this.#lanes.values()) {
      const kept: ComputeTask[] = []
      for (const t of lane.tasks) (match(t) ? droppedTasks : kept).push(t)
      lane.tasks = kept
    }
    const dropped = droppedTasks.length
    this.#length -= dropped
    let abortedRunning = false
    for (const running of this.#running) {
      if (!match(running.task)) continue
      running.abort.abort()
      abortedRunning = true
    }
    return { dropped, droppedTasks, abortedRunning }
  }

  /** Forgets a closed session (after cancelling its tasks). */
  forget (sessionId: string): void {
    this.#length -= this.queuedFor(sessionId)
    this.#lanes.delete(sessionId)
  }

  /** The next batch: the head of the waiting session whose last turn is oldest, and heads of others that may join it. */
  #next (): ComputeTask[] {
    const waiting = [...this.#lanes.values()].filter(l => l.tasks.length > 0).sort((a, b) => a.lastTurn - b.lastTurn)
    const first = waiting[0]
    if (first === undefined) return []
    const batch = [this.#take(first)]
    const key = batch[0]?.batchKey
    const max = this.#init.runBatch === undefined ? 1 : this.#init.maxBatch ?? 1
    if (key === undefined) return batch
    for (const lane of waiting.slice(1)) {
      if (batch.length >= max) break
      const head = lane.tasks[0] as ComputeTask
      if (head.batchKey === key && (this.#init.canJoin?.(batch, head) ?? true)) batch.push(this.#take(lane))
    }
    return batch
  }

  #take (lane: Lane): ComputeTask {
    lane.lastTurn = ++this.#turns
    this.#length--
    return lane.tasks.shift() as ComputeTask
  }

  #pump (): void {
    if (this.#running.length > 0 || this.#holding !== undefined) return
    const { lanes, waitMs } = this.#expectedSoon()
    if (lanes.length > 0) {
      const timer = setTimeout(() => { this.#holding = undefined; this.#start() }, waitMs)
      this.#holding = { timer, expected: lanes }
      return
    }
    this.#start()
  }

  /**
   * Idle sessions that would join the next batch if they sent a run now, and how long to wait
   * for them: those whose last run had its key and finished moments ago (within a few runs'
   * time: a quarter of a run, at most 2 ms), and those whose next run is due by their own
   * rhythm within one and a half runs' time (at most 20 ms; an overdue one is not waited for). None when
   * batches are off, the next task runs alone, or the batch is full already.
   */
  #expectedSoon (): { lanes: Lane[], waitMs: number } {
    const none = { lanes: [], waitMs: 0 }
    const max = this.#init.runBatch === undefined ? 1 : this.#init.maxBatch ?? 1
    if (max <= 1 || this.#runMs === 0) return none
    const waiting = [...this.#lanes.values()].filter(l => l.tasks.length > 0)
    const key = waiting.sort((a, b) => a.lastTurn - b.lastTurn)[0]?.tasks[0]?.batchKey
    if (key === undefined || waiting.filter(l => l.tasks[0]?.batchKey === key).length >= max) return none
    const now = performance.now()
    const recent = now - 4 * this.#runMs
    const dueBy = now + Math.min(MAX_DUE_HOLD_MS, DUE_HOLD_SHARE_OF_RUN * this.#runMs)
    let waitUntil = now
    const lanes: Lane[] = []
    for (const l of this.#lanes.values()) {
      if (l.tasks.length > 0 || l.lastKey !== key) continue
      const due = l.lastPushAt + l.cycleMs
      const isDue = l.cycleMs > 0 && due <= dueBy && due >= now - 0.25 * l.cycleMs
      if (!isDue && l.lastDoneAt < recent) continue
      lanes.push(l)
      waitUntil = Math.max(waitUntil, isDue ? Math.min(dueBy, due + 0.1 * l.cycleMs) : now + Math.min(MAX_HOLD_MS, HOLD_SHARE_OF_RUN * this.#runMs))
    }
    return { lanes, waitMs: waitUntil - now }
  }

  #start (): void {
    const batch = this.#next()
    if (batch.length === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) resolve()
      return
    }
    this.#running = batch.map(task => ({ task, abort: new AbortController() }))
    this.#batches++
    const signals = this.#running.map(r => r.abort.signal)
    const work = batch.length === 1 ? (batch[0] as ComputeTask).run(signals[0] as AbortSignal) : (this.#init.runBatch as NonNullable<ComputeQueueInit['runBatch']>)(batch, signals)
    const began = performance.now()
    // Tasks report their own errors; the queue only keeps going.
    work.catch(() => {}).finally(() => {
      const now = performance.now()
      this.#runMs = this.#runMs === 0 ? now - began : 0.8 * this.#runMs + 0.2 * (now - began)
      for (const { task } of this.#running) {
        const lane = this.#lanes.get(task.sessionId)
        if (lane === undefined) continue
        lane.lastDoneAt = now
        if (task.batchKey !== undefined) lane.lastKey = task.batchKey
        else delete lane.lastKey
      }
      this.#running = []
      this.#pump()
    })
  }
}
