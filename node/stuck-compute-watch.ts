/**
 * Notices compute that has stopped moving while the event loop stays free: a run whose promise
 * never settles (a bug on the compute path, or an execution provider that computes off the
 * main thread and hangs there). Such a server echoes pings, opens sessions, queues runs and
 * finishes none; each client waits out its result timeout, fails over, and the next one comes.
 * A server that notices can leave the swarm instead of swallowing every run sent to it.
 *
 * Only time the event loop was free counts. onnxruntime-node runs every provider's graph
 * synchronously on the main thread (its `run` is a `setImmediate` around a blocking call), so a
 * run holds the loop for as long as it computes, and however long that takes, it is
 * computing, not stuck: a tick that comes late adds nothing. (A device that hangs inside such a
 * call freezes the whole process instead; clients take it for frozen with their liveness probe.)
 */

/** A tick this much later than its period means the event loop was held. */
const LATE_MS = 100

export interface StuckComputeWatchInit {
  /** An id of the batch that is computing now (a new one for every batch), undefined when none is. */
  runningBatch: () => number | undefined
  /** Free time one batch may compute before it counts as stuck, ms. */
  stuckAfterMs: number
  /** Called once, with the free time the batch has been computing. */
  onStuck: (ms: number) => void
}

export class StuckComputeWatch {
  readonly #init: StuckComputeWatchInit
  #timer: ReturnType<typeof setInterval> | undefined

  constructor (init: StuckComputeWatchInit) {
    if (!(init.stuckAfterMs > 0)) throw new RangeError(`Cannot watch for compute stuck after ${init.stuckAfterMs} ms: it must be > 0`)
    this.#init = init
  }

  start (): void {
    if (this.#timer !== undefined) return
    const periodMs = Math.max(10, Math.min(1000, this.#init.stuckAfterMs / 4))
    let lastTick = performance.now()
    let batch: number | undefined
    let freeMs = 0
    this.#timer = setInterval(() => {
      const now = performance.now()
      const late = now - lastTick > periodMs + LATE_MS
      lastTick = now
      const running = this.#init.runningBatch()
      if (running === undefined || running !== batch) {
        batch = running
        freeMs = 0
        return
      }
      if (!late) freeMs += periodMs
      if (freeMs < this.#init.stuckAfterMs) return
      this.stop()
      this.#init.onStuck(freeMs)
    }, periodMs)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
