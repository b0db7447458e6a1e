import { describe, expect, it } from 'vitest'
import { ApiError } from '../../client/openai/api-error.js'
import { SessionPool, sharedPrefix, type PooledSession } from '../../client/openai/session-pool.js'

/** A session that only remembers its tokens (the pool reads nothing else) and whether it was closed. */
class FakeSession implements PooledSession {
  tokens: number[] = []
  closed = false
  constructor (readonly name: string) {}
  async close (): Promise<void> { this.closed = true }
}

function pool (opts: { maxSessions?: number, maxWaiting?: number, idleMs?: number } = {}): { pool: SessionPool<FakeSession>, opened: FakeSession[] } {
  const opened: FakeSession[] = []
  return {
    opened,
    pool: new SessionPool({
      open: async () => { const s = new FakeSession(`s${opened.length}`); opened.push(s); return s },
      maxSessions: opts.maxSessions ?? 2,
      maxWaiting: opts.maxWaiting ?? 4,
      idleMs: opts.idleMs ?? 60_000
    })
  }
}

describe('SessionPool', () => {
  it('gives a conversation its own session back on its next turn, though there is room for more', async () => {
    const { pool: p, opened } = pool({ maxSessions: 4 })
    const a = await p.acquire([1, 10, 11])
    a.tokens = [1, 10, 11, 12, 13]
    p.release(a, true)
    const b = await p.acquire([1, 20, 21]) // another conversation: a new session while there is room
    b.tokens = [1, 20, 21, 22]
    p.release(b, true)
    expect(await p.acquire([1, 10, 11, 12, 13, 14, 15])).toBe(a)
    expect(await p.acquire([1, 20, 21, 22, 23])).toBe(b)
    expect(opened).toHaveLength(2)
  })

  it('lends the idle session sharing the longest prefix to be copied from: nobody takes it meanwhile, then it is idle again', async () => {
    const { pool: p, opened } = pool({ maxSessions: 3 })
    const [a, b] = await p.acquireMany([1], 2)
    a!.tokens = [1, 2, 3, 4, 5, 6]
    b!.tokens = [1, 9, 9, 9]
    p.release(a!, true)
    p.release(b!, true)
    expect(await p.withIdlePrefix([1, 2, 3, 7], 4, async () => 'copied')).toBeUndefined() // shares only 3
    const lent = Promise.withResolvers<void>()
    const using = p.withIdlePrefix([1, 2, 3, 4, 8], 3, async (source, shared) => {
      expect([source, shared]).toEqual([a, 4])
      await lent.promise
      return source.name
    })
    // meanwhile a request that would have taken a (it continues a's conversation) gets another session
    const other = await p.acquire([1, 2, 3, 4, 5, 6, 7])
    expect(other).not.toBe(a)
    lent.resolve()
    expect(await using).toBe('s0')
    p.release(other, true)
    expect(await p.acquire([1, 2, 3, 4, 5, 6, 7])).toBe(a) // idle again
    expect(opened).toHaveLength(3)
  })

  it('when full, lends the idle session sharing the longest prefix, least recently used on a tie', async () => {
    const { pool: p, opened } = pool({ maxSessions: 2 })
    const a = await p.acquire([1])
    const b = await p.acquire([1])
    a.tokens = [1, 5, 6, 7]
    b.tokens = [1, 8, 9, 9]
    p.release(a, true)
    p.release(b, true)
    expect(await p.acquire([1, 8, 3, 3, 3, 3])).toBe(b) // shares 2 with b, 1 with a
    p.release(b, true)
    expect(await p.acquire([2, 2])).toBe(a) // shares nothing: a has been idle longer
    expect(opened).toHaveLength(2)
  })

  it('takes several sessions at once, the matching one first, or waits until all are free', async () => {
    const { pool: p, opened } = pool({ maxSessions: 3 })
    const a = await p.acquire([1, 10])
    a.tokens = [1, 10, 11, 12]
    p.release(a, true)
    const [first, ...rest] = await p.acquireMany([1, 10, 11, 12, 13], 3)
    expect(first).toBe(a) // the conversation's own session, then two new ones
    expect(rest.map(s => s.name)).toEqual(['s1', 's2'])
    expect(p.busyCount).toBe(3)
    for (const s of [first!, ...rest]) p.release(s, true)
    // two requests of 2 choices each, 3 sessions: the second waits for the first's, holding none
    const one = await p.acquireMany([1], 2)
    let second: FakeSession[] | undefined
    const waiting = p.acquireMany([1], 2).then(s => { second = s })
    const single = await p.acquire([1]) // the third session is free for a one-choice request
    await Promise.resolve()
    expect(second).toBeUndefined()
    p.release(single, true)
    p.release(one[0]!, true)
    await waiting
    expect(second).toHaveLength(2)
    expect(opened).toHaveLength(3)
    await expect(p.acquireMany([1], 4)).rejects.toThrow(RangeError)
  })

  it('makes a request wait for a busy session, and refuses past maxWaiting with 429', async () => {
    const { pool: p } = pool({ maxSessions: 1, maxWaiting: 1 })
    const a = await p.acquire([1])
    const waiting = p.acquire([1])
    const refused = await p.acquire([1]).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(ApiError)
    expect([(refused as ApiError).status, (refused as ApiError).code]).toEqual([429, 'sessions_busy'])
    p.release(a, true)
    expect(await waiting).toBe(a)
  })

  it('stops waiting when the request is aborted, and the next waiter is served', async () => {
    const { pool: p } = pool({ maxSessions: 1 })
    const a = await p.acquire([1])
    const controller = new AbortController()
    const gone = p.acquire([1], controller.signal)
    const next = p.acquire([1])
    controller.abort(new Error('client left'))
    await expect(gone).rejects.toThrow('client left')
    p.release(a, true)
    expect(await next).toBe(a)
  })

  it('closes a session given back unhealthy and opens a fresh one', async () => {
    const { pool: p, opened } = pool({ maxSessions: 1 })
    const a = await p.acquire([1])
    p.release(a, false)
    expect(a.closed).toBe(true)
    const b = await p.acquire([1])
    expect(b).not.toBe(a)
    expect(opened).toHaveLength(2)
    expect([p.busyCount, p.idleCount]).toEqual([1, 0])
  })

  it('closes idle sessions after idleMs, and all of them on close()', async () => {
    const { pool: p } = pool({ idleMs: 20 })
    const a = await p.acquire([1])
    const b = await p.acquire([2])
    p.release(a, true)
    await new Promise(resolve => setTimeout(resolve, 60))
    expect([a.closed, p.idleCount]).toEqual([true, 0])
    p.release(b, true)
    await p.close()
    expect(b.closed).toBe(true)
    await expect(p.acquire([1])).rejects.toMatchObject({ status: 503 })
  })

  it('with idleMs 0 keeps no session: each request opens its own', async () => {
    const { pool: p, opened } = pool({ idleMs: 0 })
    const a = await p.acquire([1, 2])
    a.tokens = [1, 2, 3]
    p.release(a, true)
    expect(a.closed).toBe(true)
    expect(await p.acquire([1, 2, 3, 4])).not.toBe(a)
    expect(opened).toHaveLength(2)
  })

  it('gives the slot back when opening a session fails', async () => {
    let fail = true
    const p = new SessionPool<FakeSession>({
      open: async () => { if (fail) throw new Error('no route'); return new FakeSession('ok') },
      maxSessions: 1, maxWaiting: 1, idleMs: 1000
    })
    await expect(p.acquire([1])).rejects.toThrow('no route')
    fail = false
    expect((await p.acquire([1])).name).toBe('ok')
  })

  it('sharedPrefix counts leading equal tokens', () => {
    expect(sharedPrefix([1, 2, 3], [1, 2, 4])).toBe(2)
    expect(sharedPrefix([], [1])).toBe(0)
    expect(sharedPrefix([1, 2], [1, 2, 3])).toBe(2)
  })
})
