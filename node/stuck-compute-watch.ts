/**
 * Notices compute that has stopped moving. A run on webgpu awaits the GPU, so a device that
 * hangs (a driver reset, a lost device) leaves the event loop free: pings echo, sessions open,
 * runs queue, and none ever finishes. Each client waits out its result timeout, fails over,
 * and the next one comes. A server that notices can leave the swarm instead of swallowing
 * every run sent to it.
 *
 * Only time the event loop was free counts: a run on the CPU holds the loop for as long as it
 * computes (onnxruntime's Node binding runs on the main thread), and however long that takes,
 * it is computing, not stuck. So a tick that comes late adds nothing.
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
