/** One unit of work for the accelerator: a run of one session. */
export interface ComputeTask {
  readonly sessionId: string
  readonly runId: number
  readonly enqueuedAt: number
  /** Does the work; `signal` aborts between blocks when the run is cancelled mid-way. */
  run: (signal: AbortSignal) => Promise<void>
}

/**
 * Runs tasks one at a time, first come first served across all sessions (one model,
 * one device: running two at once only makes both slower). Queued tasks can be removed
 * before they start, which is what makes cancellation early: a cancelled run that had
 * not started is never computed.
 */
export class ComputeQueue {
  readonly #queue: ComputeTask[] = []
  #running: { task: ComputeTask, abort: AbortController } | undefined
  #idleWaiters: Array<() => void> = []

  /** Tasks waiting to start (not counting the running one). */
  get length (): number { return this.#queue.length }

  /** True while a task runs or waits. */
  get busy (): boolean { return this.#running !== undefined || this.#queue.length > 0 }

  /** Resolves once no task runs or waits (at once when idle already). */
  async whenIdle (): Promise<void> {
    if (!this.busy) return
    await new Promise<void>(resolve => { this.#idleWaiters.push(resolve) })
  }

  /** Queues a task; it starts at once when nothing runs. */
  push (task: ComputeTask): void {
    this.#queue.push(task)
    this.#pump()
  }

  /**
   * Removes queued tasks that match and aborts the running one if it matches;
   * returns how many queued tasks were dropped before they started.
   */
  cancel (match: (t: ComputeTask) => boolean): { dropped: number, abortedRunning: boolean } {
    let dropped = 0
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      if (match(this.#queue[i] as ComputeTask)) {
        this.#queue.splice(i, 1)
        dropped++
      }
    }
    const running = this.#running
    const abortedRunning = running !== undefined && match(running.task)
    if (abortedRunning) running.abort.abort()
    return { dropped, abortedRunning }
  }

  #pump (): void {
    if (this.#running !== undefined) return
    const task = this.#queue.shift()
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
