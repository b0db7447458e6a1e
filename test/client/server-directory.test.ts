import { describe, expect, it } from 'vitest'
import { planRoute } from '../../client/routing/route-planner.js'
import { ServerDirectory } from '../../client/swarm/server-directory.js'
import { knownServer as known } from '../helpers/known-server.js'

const ids = (dir: ServerDirectory, now?: number): string[] => dir.candidates(now).map(c => c.peerId)

describe('ServerDirectory', () => {
  it('a failed server is banned, for twice as long at each failure, and comes back when the ban lapses', () => {
    const dir = new ServerDirectory({ baseMs: 1000, maxMs: 3000 })
    dir.update([known('a', 0, 5), known('b', 0, 5)])
    dir.ban('a', 0)
    expect(ids(dir, 999)).toEqual(['b'])
    expect(ids(dir, 1000)).toEqual(['a', 'b'])
    dir.ban('a', 1000)
    expect(ids(dir, 2999)).toEqual(['b'])
    dir.ban('a', 3000) // capped at maxMs
    expect(ids(dir, 5999)).toEqual(['b'])
    expect(ids(dir, 6000)).toEqual(['a', 'b'])
  })

  it('a draining server is no candidate until a fresh discovery says what it serves now, and is not banned', () => {
    const dir = new ServerDirectory()
    dir.update([known('a', 0, 3), known('m', 3, 5)])
    dir.markDraining('m')
    expect(ids(dir)).toEqual(['a'])
    expect(dir.get('m')?.info.state).toBe('draining')
    // it moved to [0,2) and is online there
    dir.update([known('a', 0, 3), known('m', 0, 2)])
    expect(ids(dir)).toEqual(['a', 'm'])
    expect(dir.isBanned('m')).toBe(false)
    dir.markDraining('unknown') // nothing to mark
    expect(dir.all()).toHaveLength(2)
  })

  it('an unreachable server is dropped until a discovery lists it again, and a stale one cannot bring it straight back', () => {
    const dir = new ServerDirectory({ baseMs: 1000, maxMs: 3000 })
    dir.update([known('a', 0, 5), known('b', 0, 5)])
    dir.forget('a', 0)
    expect(dir.all().map(s => s.info.peerId)).toEqual(['b'])
    dir.update([known('a', 0, 5), known('b', 0, 5)], 0) // a discovery that began before it went away
    expect(ids(dir, 500)).toEqual(['b'])
    expect(ids(dir, 1000)).toEqual(['a', 'b']) // it answered a later discovery: it is back
  })

  it('a discovery that did not find a known server without asking it keeps it once; one that asked it and got no answer drops it', () => {
    const dir = new ServerDirectory()
    dir.update([known('a', 0, 3), known('b', 3, 5), known('c', 3, 5)])
    // a lookup timed out: b was never asked; c was asked and did not answer
    dir.update([known('a', 0, 3)], undefined, new Set(['a', 'c']))
    expect(ids(dir)).toEqual(['a', 'b'])
    // found again: its count of misses starts over
    dir.update([known('a', 0, 3), known('b', 3, 5)], undefined, new Set(['a', 'b']))
    dir.update([known('a', 0, 3)], undefined, new Set(['a']))
    expect(ids(dir)).toEqual(['a', 'b'])
    // missed by two discoveries in a row: dropped
    dir.update([known('a', 0, 3)], undefined, new Set(['a']))
    expect(ids(dir)).toEqual(['a'])
    // kept servers keep what was learnt of them: a draining one stays no candidate
    dir.update([known('a', 0, 3), known('d', 3, 5)], undefined, new Set(['a', 'd']))
    dir.markDraining('d')
    dir.update([known('a', 0, 3)], undefined, new Set(['a']))
    expect(dir.get('d')?.info.state).toBe('draining')
    expect(ids(dir)).toEqual(['a'])
    // and one the client forgot (unreachable) is not brought back by a discovery that missed it
    dir.forget('a')
    dir.update([], undefined, new Set())
    expect(dir.get('a')).toBeUndefined()
  })

  it('a server that refused a session for want of room counts as full, not banned: routing still takes it when it must', () => {
    const dir = new ServerDirectory()
    dir.update([known('a', 0, 5), known('b', 0, 5, { openSessions: 1 })])
    dir.markFull('a')
    expect(dir.isBanned('a')).toBe(false)
    const a = dir.candidates().find(c => c.peerId === 'a')
    expect(a?.hasCacheRoom).toBe(false)
    expect(planRoute(dir.candidates(), 0, 5).map(h => h.peerId)).toEqual(['b'])
    dir.update([known('a', 0, 5)]) // alone now: full or not, it is the route
    dir.markFull('a')
    expect(planRoute(dir.candidates(), 0, 5).map(h => h.peerId)).toEqual(['a'])
  })

  it('says why the servers it knows for some blocks are no candidates: banned (how much longer), draining', () => {
    const dir = new ServerDirectory({ baseMs: 1000, maxMs: 3000 })
    dir.update([known('peer-aaaaaa', 0, 3), known('peer-bbbbbb', 2, 5), known('peer-cccccc', 3, 5)])
    dir.ban('peer-aaaaaa', 0)
    dir.markDraining('peer-bbbbbb')
    expect(dir.leftOut([2], {}, 250)).toEqual(['…aaaaaa[0,3) banned 0.8 s more after 1 failure', '…bbbbbb[2,5) draining'])
    expect(dir.leftOut([4], {}, 250)).toEqual(['…bbbbbb[2,5) draining']) // …cccccc is a candidate
  })

  it('hands routing each server\'s open sessions and cache room', () => {
    const dir = new ServerDirectory()
    dir.update([known('b', 0, 5, { openSessions: 3 }), known('f', 0, 5, { freeCacheTokens: 0 })])
    expect(dir.candidates().map(c => [c.peerId, c.openSessions, c.hasCacheRoom])).toEqual([['b', 3, true], ['f', 0, false]])
  })

  it('counts the sessions this client opened until the next discovery, so sessions opened in a row spread', () => {
    const dir = new ServerDirectory()
    dir.update([known('a', 0, 5), known('b', 0, 5, { maxSessions: 2 })])
    const first = planRoute(dir.candidates(), 0, 5)[0]?.peerId as string
    dir.noteSession(first, 1)
    const second = planRoute(dir.candidates(), 0, 5)[0]?.peerId as string
    expect(new Set([first, second]).size).toBe(2)
    dir.noteSession(second, 1)
    expect(dir.candidates().find(c => c.peerId === 'b')).toMatchObject({ openSessions: 1, hasCacheRoom: true })
    dir.noteSession('b', 1) // b is full now: 2 of 2
    expect(dir.candidates().find(c => c.peerId === 'b')?.hasCacheRoom).toBe(false)
    dir.noteSession('b', -1)
    dir.noteSession('b', -1)
    dir.noteSession('b', -1) // never below 0
    expect(dir.candidates().find(c => c.peerId === 'b')?.openSessions).toBe(0)
    // a fresh discovery's counts include this client's sessions: what was noted is dropped
    dir.noteSession('a', 1)
    dir.update([known('a', 0, 5, { openSessions: 1 }), known('b', 0, 5)])
    expect(dir.candidates().map(c => c.openSessions)).toEqual([1, 0])
  })

  it('keeps counting a session noted while a discovery ran: that discovery\'s counts may not have it', () => {
    const dir = new ServerDirectory()
    dir.update([known('a', 0, 5), known('b', 0, 5)], 1000)
    dir.noteSession('a', 1, 1500) // before the next discovery began: its count has it
    dir.noteSession('b', 1, 2500) // after it began: its count may have missed it
    dir.update([known('a', 0, 5, { openSessions: 1 }), known('b', 0, 5)], 2000)
    expect(dir.candidates().map(c => [c.peerId, c.openSessions])).toEqual([['a', 1], ['b', 1]])
    dir.update([known('a', 0, 5, { openSessions: 1 }), known('b', 0, 5, { openSessions: 1 })], 3000)
    expect(dir.candidates().map(c => [c.peerId, c.openSessions])).toEqual([['a', 1], ['b', 1]])
  })
})
