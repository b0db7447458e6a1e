/** A server that named its relay tries it again, backing off, until it listens through it once more. */
import { pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { PetalHost } from '../../net/host.js'
import { keepNamedRelays, namedRelays } from '../../node/relay-rejoin.js'

const RELAY_A = '/ip4/1.2.3.4/tcp/1/p2p/RelayA/p2p-circuit'
const RELAY_B = '/ip4/5.6.7.8/tcp/1/p2p/RelayB/p2p-circuit'

/**
 * A host listening through the relays in `addrs` (as `<relay>/p2p/S`); dialing a relay fails
 * while `down` holds it, and listening through it adds its address back.
 */
function fakeHost (addrs: string[], down: Set<string>): { host: PetalHost, dials: Array<{ relay: string, at: number }>, drop: (relay: string) => void } {
  const events = new EventTarget()
  let current = addrs.map(a => `${a}/p2p/S`)
  const dials: Array<{ relay: string, at: number }> = []
  const host = {
    status: 'started',
    getMultiaddrs: () => current.map(a => ({ toString: () => a })),
    addEventListener: events.addEventListener.bind(events),
    dial: async (addr: { toString: () => string }) => {
      dials.push({ relay: addr.toString(), at: Date.now() })
      if (down.has(addr.toString())) throw new Error('connection refused')
    },
    services: { listener: { listen: async (circuits: Array<{ toString: () => string }>) => { current = [...current, ...circuits.map(c => `${c.toString()}/p2p/S`)] } } }
  }
  return { host: host as unknown as PetalHost, dials, drop: relay => { current = current.filter(a => !a.startsWith(relay)) } }
}

describe('keepNamedRelays', () => {
  afterEach(() => { vi.useRealTimers() })

  it('only listen addresses that name a relay by id count', () => {
    expect(namedRelays(['/ip4/0.0.0.0/tcp/0', '/p2p-circuit', RELAY_A]).map(String)).toEqual([RELAY_A])
  })

  it('leaves a relay it listens through alone, retries a lost one with doubling waits up to the cap, and stops once back', async () => {
    vi.useFakeTimers()
    const relayA = RELAY_A.replace('/p2p-circuit', '')
    const down = new Set([relayA])
    const { host, dials, drop } = fakeHost([RELAY_A, RELAY_B], down)
    const lines: string[] = []
    keepNamedRelays(host, ['/ip4/0.0.0.0/tcp/0', RELAY_A, RELAY_B], pino({ level: 'info' }, { write: (l: string) => { lines.push(l) } }), { checkMs: 1000, maxBackoffMs: 8000 })
    await vi.advanceTimersByTimeAsync(5000)
    expect(dials).toEqual([]) // both relays carry an address

    const lostAt = Date.now()
    drop(RELAY_A)
    await vi.advanceTimersByTimeAsync(40_000)
    const gaps = dials.map((d, i) => d.at - (i === 0 ? lostAt : dials[i - 1]!.at))
    expect(dials.every(d => d.relay === relayA)).toBe(true) // B never lost its address
    // looks every second; after each failure the next try waits 2, 4, 8, then 8 (the cap) seconds
    expect(gaps.slice(0, 5)).toEqual([1000, 2000, 4000, 8000, 8000])

    down.delete(relayA)
    await vi.advanceTimersByTimeAsync(8000)
    const tries = dials.length
    expect(host.getMultiaddrs().map(String)).toContain(`${RELAY_A}/p2p/S`)
    expect(lines.some(l => l.includes('listening through the relay again'))).toBe(true)
    await vi.advanceTimersByTimeAsync(20_000)
    expect(dials).toHaveLength(tries) // back: no more tries
  })

  it('does nothing for a server that names no relay', async () => {
    vi.useFakeTimers()
    const { host, dials } = fakeHost([], new Set())
    keepNamedRelays(host, ['/p2p-circuit'], pino({ level: 'silent' }), { checkMs: 1000 })
    await vi.advanceTimersByTimeAsync(10_000)
    expect(dials).toEqual([])
  })
})
