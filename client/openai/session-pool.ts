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
  /** Requests waiting for a session. */
  get waitingCount (): number { return this.#waiting.length }

  /**
   * A session for a request whose sequence is `ids`: the idle one that `ids` continues (it
   * shares at least half of that session's tokens: the same conversation, a turn later), else a
   * new one while there is room, else the idle one sharing the longest prefix (least recently
   * used on a tie; its caches are overwritten from the first difference). Waits while all are
   * busy; 429 when too many wait.
   */
  async acquire (ids: readonly number[], signal?: AbortSignal): Promise<S> {
    return (await this.acquireMany(ids, 1, signal))[0] as S
  }

  /**
   * `count` sessions for `count` choices of one request, all at once (a request holding part
   * of what it needs could block another that holds the rest): the first as `acquire` picks
   * it, the others new while there is room, else the idle ones idle longest.
   */
  async acquireMany (ids: readonly number[], count: number, signal?: AbortSignal): Promise<S[]> {
    const { maxSessions } = this.#init
    if (!(Number.isInteger(count) && count >= 1 && count <= maxSessions)) throw new RangeError(`Cannot take ${count} sessions at once: the pool holds ${maxSessions}`)
    for (;;) {
      if (this.#closed) throw new ApiError(503, 'The API server is shutting down', { code: 'shutting_down' })
      signal?.throwIfAborted()
      if (maxSessions - this.#busy >= count) return await this.#take(ids, count)
      if (this.#waiting.length >= this.#init.maxWaiting) {
        throw new ApiError(429, `All ${maxSessions} sessions are busy and ${this.#waiting.length} requests wait already: try again later`, { type: 'rate_limit_exceeded', code: 'sessions_busy' })
      }
      await this.#wait(signal)
    }
  }

  /** Takes `count` sessions, idle or new (the caller made sure there are enough). */
  async #take (ids: readonly number[], count: number): Promise<S[]> {
    this.#busy += count
    const room = (): boolean => this.#busy + this.#idle.length - count + picked.length + opening < this.#init.maxSessions
    const picked: S[] = []
    let opening = 0
    const best = this.#bestIdle(ids)
    const continued = best !== undefined && 2 * sharedPrefix(best.session.tokens, ids) >= best.session.tokens.length
    if (best !== undefined && (continued || !room())) picked.push(this.#unidle(best))
    // the rest: new sessions while there is room, else those idle longest (the front of the list)
    for (let i = picked.length; i < count; i++) {
      if (room()) opening++
      else picked.push(this.#unidle(this.#idle[0] as Idle<S>))
    }
    const opened = await Promise.allSettled(Array.from({ length: opening }, async () => await this.#init.open()))
    const failed = opened.find(r => r.status === 'rejected')
    const sessions = [...picked, ...opened.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])]
    if (failed === undefined) return sessions
    for (const session of sessions) this.release(session, true)
    this.#busy -= count - sessions.length
    this.#wakeOne()
    throw failed.reason
  }

  /**
   * Lends the idle session sharing the longest prefix with `ids`, if it shares at least
   * `minShared` tokens, to `use` (no request can take it meanwhile), then makes it idle again;
   * undefined when there is none. A new conversation's session copies a system prompt from it.
   */
  async withIdlePrefix<T> (ids: readonly number[], minShared: number, use: (session: S, shared: number) => Promise<T>): Promise<T | undefined> {
    const best = this.#bestIdle(ids)
    const shared = best === undefined ? 0 : sharedPrefix(best.session.tokens, ids)
    if (best === undefined || shared < minShared || this.#closed) return undefined
    const session = this.#unidle(best)
    this.#busy++
    try {
      return await use(session, shared)
    } finally {
      this.release(session, true) // it was only read from
    }
  }

  #unidle (entry: Idle<S>): S {
    this.#idle.splice(this.#idle.indexOf(entry), 1)
    clearTimeout(entry.timer)
    return entry.session
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
