/** A server's watch on its own addresses: a relay that goes, one that comes, a new one. */
import { pino, type Logger } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { PetalHost } from '../../net/host.js'
import { waitForAddress, watchReachability } from '../../node/reachability.js'

/** A host whose addresses the test sets; `update()` raises self:peer:update as libp2p would. */
function fakeHost (addrs: string[]): { host: PetalHost, set: (a: string[]) => void, update: () => void } {
  const events = new EventTarget()
  let current = addrs
  const host = {
    status: 'started',
    getMultiaddrs: () => current.map(a => ({ toString: () => a })),
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events)
  }
  return { host: host as unknown as PetalHost, set: a => { current = a }, update: () => { events.dispatchEvent(new Event('self:peer:update')) } }
}

function capture (): { log: Logger, lines: () => Array<{ level: number, msg: string }> } {
  const lines: string[] = []
  return { log: pino({ level: 'info' }, { write: (l: string) => { lines.push(l) } }), lines: () => lines.map(l => JSON.parse(l)) }
}

describe('watchReachability', () => {
  afterEach(() => { vi.useRealTimers() })

  it('a new relay address calls onNewAddresses; losing every address warns; the next one logs and calls again', () => {
    vi.useFakeTimers()
    const { host, set, update } = fakeHost(['/ip4/1.2.3.4/tcp/1/p2p/A/p2p-circuit/p2p/S'])
    const { log, lines } = capture()
    const fresh = vi.fn()
    watchReachability(host, log, fresh)
    set(['/ip4/5.6.7.8/tcp/1/p2p/B/p2p-circuit/p2p/S'])
    update()
    expect(fresh).toHaveBeenCalledTimes(1)
    expect(lines()).toEqual([])
    set([])
    vi.advanceTimersByTime(2000) // libp2p raises no event when a reservation goes: the 2 s look finds it
    expect(lines().map(l => l.msg)).toEqual([expect.stringMatching(/^unreachable: no address left/)])
    expect(lines()[0]?.level).toBe(40) // warn
    expect(fresh).toHaveBeenCalledTimes(1)
    set(['/ip4/5.6.7.8/tcp/1/p2p/B/p2p-circuit/p2p/S'])
    update()
    expect(lines().map(l => l.msg)).toEqual([expect.stringMatching(/^unreachable/), 'reachable again'])
    expect(fresh).toHaveBeenCalledTimes(2)
    update() // nothing changed: nothing happens
    vi.advanceTimersByTime(2000)
    expect(fresh).toHaveBeenCalledTimes(2)
    expect(lines()).toHaveLength(2)
  })

  it('waitForAddress resolves when the first address comes and rejects, saying why, when none does', async () => {
    const later = fakeHost([])
    const waiting = waitForAddress(later.host, 10_000)
    later.set(['/ip4/1.2.3.4/tcp/1/p2p/A/p2p-circuit/p2p/S'])
    later.update()
    await expect(waiting).resolves.toBeUndefined()
    await expect(waitForAddress(fakeHost([]).host, 50)).rejects.toThrow(/No address to announce after 50 ms: a server listening only through a relay/)
  })
})
