/**
 * Sessions kept between HTTP requests. OpenAI's API is stateless: a chat client sends the
 * whole conversation every turn. A request takes the idle session whose tokens share the
 * longest prefix with its own, so its servers already hold that prefix in their caches and
 * only the rest is sent (`ChatSession.continueWith`); a multi-turn chat costs what it costs
 * through the SDK's own sessions.
 */
import { ApiError } from './api-error.js'

/** What the pool needs of a session (a `ChatSession`). */
export interface PooledSession {
  readonly tokens: readonly number[]
  close: () => Promise<void>
}

export interface SessionPoolInit<S extends PooledSession> {
  open: () => Promise<S>
  /** Sessions at once, busy and idle (each holds cache on its servers). */
  maxSessions: number
  /** Requests that may wait for a busy session; more get 429. */
  maxWaiting: number
  /** An idle session is closed after this long, ms, giving its servers' caches back; 0 closes it at once (no reuse). */
  idleMs: number
}

interface Idle<S> {
  session: S
  timer: NodeJS.Timeout
}

export class SessionPool<S extends PooledSession> {
  readonly #init: SessionPoolInit<S>
  readonly #idle: Array<Idle<S>> = []
  /** Sessions lent out, and those being opened. */
  #busy = 0
  readonly #waiting: Array<() => void> = []
  #closed = false

  constructor (init: SessionPoolInit<S>) {
    this.#init = init
  }

  get idleCount (): number { return this.#idle.length }
  get busyCount (): number { return this.#busy }

  /**
   * A session for a request whose sequence is `ids`: the idle one that `ids` continues (it
   * shares at least half of that session's tokens: the same conversation, a turn later), else a
   * new one while there is room, else the idle one sharing the longest prefix (least recently
   * used on a tie; its caches are overwritten from the first difference). Waits while all are
   * busy; 429 when too many wait.
   */
  async acquire (ids: readonly number[], signal?: AbortSignal): Promise<S> {
    for (;;) {
      if (this.#closed) throw new ApiError(503, 'The API server is shutting down', { code: 'shutting_down' })
      signal?.throwIfAborted()
      const best = this.#bestIdle(ids)
      const continued = best !== undefined && 2 * sharedPrefix(best.session.tokens, ids) >= best.session.tokens.length
      if (best !== undefined && (continued || this.#busy + this.#idle.length >= this.#init.maxSessions)) {
        this.#idle.splice(this.#idle.indexOf(best), 1)
        clearTimeout(best.timer)
        this.#busy++
        return best.session
      }
      if (this.#busy + this.#idle.length < this.#init.maxSessions) {
        this.#busy++
        try {
          return await this.#init.open()
        } catch (err) {
          this.#busy--
          this.#wakeOne()
          throw err
        }
      }
      if (this.#waiting.length >= this.#init.maxWaiting) {
        throw new ApiError(429, `All ${this.#init.maxSessions} sessions are busy and ${this.#waiting.length} requests wait already: try again later`, { type: 'rate_limit_exceeded', code: 'sessions_busy' })
      }
      await this.#wait(signal)
    }
  }

  /** Gives a session back: idle for the next request, or closed when its state is unknown (an error, an abort). */
  release (session: S, healthy: boolean): void {
    this.#busy--
    if (healthy && !this.#closed && this.#init.idleMs > 0) {
      const entry: Idle<S> = { session, timer: setTimeout(() => { this.#expire(entry) }, this.#init.idleMs) }
      entry.timer.unref()
      this.#idle.push(entry)
    } else {
      void session.close().catch(() => {})
    }
    this.#wakeOne()
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const wake of this.#waiting.splice(0)) wake()
    const idle = this.#idle.splice(0)
    for (const entry of idle) clearTimeout(entry.timer)
    await Promise.allSettled(idle.map(async entry => { await entry.session.close() }))
  }

  /** The idle session sharing the longest prefix with `ids`; on a tie, the one idle longest (least recently used). */
  #bestIdle (ids: readonly number[]): Idle<S> | undefined {
    let best: Idle<S> | undefined
    let bestShared = -1
    for (const entry of this.#idle) {
      const shared = sharedPrefix(entry.session.tokens, ids)
      if (shared > bestShared) {
        best = entry
        bestShared = shared
      }
    }
    return best
  }

  #expire (entry: Idle<S>): void {
    const at = this.#idle.indexOf(entry)
    if (at < 0) return
    this.#idle.splice(at, 1)
    void entry.session.close().catch(() => {})
    this.#wakeOne()
  }

  async #wait (signal: AbortSignal | undefined): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.#waiting.indexOf(wake)
        if (at >= 0) this.#waiting.splice(at, 1)
        reject(signal?.reason)
      }
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      this.#waiting.push(wake)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  #wakeOne (): void {
    this.#waiting.shift()?.()
  }
}

/** How many leading tokens `a` and `b` share. */
export function sharedPrefix (a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}
