/** One unit of work for the accelerator: a run of one session. */
export interface ComputeTask {
  readonly sessionId: string
  readonly runId: number
  readonly enqueuedAt: number
  /** Does the work; `signal` aborts between blocks when the run is cancelled mid-way. */
  run: (signal: AbortSignal) => Promise<void>
}

/**
 * Runs tasks one at a time (one model, one device: running two at once only makes both
 * slower), taking turns between sessions: each session's runs keep their order, and the
 * next run comes from the session that waited longest for a turn, so a client that queues
 * hundreds of runs delays another client by at most one run. Queued tasks can be removed
 * before they start, which is what makes cancellation early: a cancelled run that had not
 * started is never computed.
 */
export class ComputeQueue {
  /** Each session's waiting tasks, and the turn it last started one in (0: never). */
  readonly #lanes = new Map<string, { tasks: ComputeTask[], lastTurn: number }>()
  #turns = 0
  #length = 0
  #running: { task: ComputeTask, abort: AbortController } | undefined
  #idleWaiters: Array<() => void> = []

  /** Tasks waiting to start (not counting the running one). */
  get length (): number { return this.#length }

  /** Tasks of one session waiting to start. */
  queuedFor (sessionId: string): number { return this.#lanes.get(sessionId)?.tasks.length ?? 0 }

  /** True while a task runs or waits. */
  get busy (): boolean { return this.#running !== undefined || this.#length > 0 }

  /** Resolves once no task runs or waits (at once when idle already). */
  async whenIdle (): Promise<void> {
    if (!this.busy) return
    await new Promise<void>(resolve => { this.#idleWaiters.push(resolve) })
  }

  /** Queues a task after its session's others; it starts at once when nothing runs. */
  push (task: ComputeTask): void {
    const lane = this.#lanes.get(task.sessionId)
    if (lane === undefined) this.#lanes.set(task.sessionId, { tasks: [task], lastTurn: 0 })
    else lane.tasks.push(task)
    this.#length++
    this.#pump()
  }

  /**
   * Removes queued tasks that match and aborts the running one if it matches;
   * returns how many queued tasks were dropped before they started.
   */
  cancel (match: (t: ComputeTask) => boolean): { dropped: number, abortedRunning: boolean } {
    let dropped = 0
    for (const lane of this.#lanes.values()) {
      const kept = lane.tasks.filter(t => !match(t))
      dropped += lane.tasks.length - kept.length
      lane.tasks = kept
    }
    this.#length -= dropped
    const running = this.#running
    const abortedRunning = running !== undefined && match(running.task)
    if (abortedRunning) running.abort.abort()
    return { dropped, abortedRunning }
  }

  /** Forgets a closed session (after cancelling its tasks). */
  forget (sessionId: string): void {
    this.#length -= this.queuedFor(sessionId)
    this.#lanes.delete(sessionId)
  }

  /** The next task: the head of the waiting session whose last turn is oldest (a few sessions: a scan). */
  #next (): ComputeTask | undefined {
    let pick: { tasks: ComputeTask[], lastTurn: number } | undefined
    for (const lane of this.#lanes.values()) {
      if (lane.tasks.length > 0 && (pick === undefined || lane.lastTurn < pick.lastTurn)) pick = lane
    }
    if (pick === undefined) return undefined
    pick.lastTurn = ++this.#turns
    this.#length--
    return pick.tasks.shift()
  }

  #pump (): void {
    if (this.#running !== undefined) return
    const task = this.#next()
    if (task === undefined) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) resolve()
      return
    }
    const abort = new AbortController()
    this.#running = { task, abort }
    // Tasks report their own errors; the queue only keeps going.
    task.run(abort.signal).catch(() => {}).finally(() => {
      this.#running = undefined
      this.#pump()
    })
  }
}
