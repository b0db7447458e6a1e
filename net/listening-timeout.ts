/**
 * A timeout that counts only the time this process could have listened.
 *
 * onnxruntime's Node binding computes on the main thread, so a client busy with its own models
 * (a long prompt through the draft model, logits at every position) can leave a peer's answer
 * unread in its socket for seconds. A plain timer that fires then blames the peer for the
 * client's own stall: libuv runs due timers before it reads sockets. Here a timer that fires
 * late counts only the time it was set for and is set again for the rest; when the time is
 * used up by a late firing, one more GRACE_MS, since the event loop reads its sockets before
 * that timer can fire.
 */

/** A firing this much later than planned means the event loop was held up. */
const LATE_MS = 20
/** After a held-up loop, the least time given to read what arrived meanwhile. */
const GRACE_MS = 50

export interface ListeningTimeout {
  /** Aborts, with a DOMException named TimeoutError, once `ms` of listening time have passed. */
  readonly signal: AbortSignal
  /** Stops the timer (call once the awaited answer came). */
  clear: () => void
}

export function listeningTimeout (ms: number): ListeningTimeout {
  const controller = new AbortController()
  const abort = (): void => { controller.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError')) }
  let counted = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  /** `grace`: the last wait, after a late firing used up the time; when it fires, time is up. */
  const arm = (planned: number, grace: boolean): void => {
    const armedAt = performance.now()
    timer = setTimeout(() => {
      if (grace) return abort()
      const late = performance.now() - armedAt - planned > LATE_MS
      counted += planned
      if (counted < ms) arm(ms - counted, false)
      else if (late) arm(GRACE_MS, true)
      else abort()
    }, planned)
    timer.unref?.()
  }
  arm(ms, false)
  return { signal: controller.signal, clear: () => { clearTimeout(timer) } }
}
