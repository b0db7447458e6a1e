/** The Announcer's rounds: at start, on a timer, and at once when the server's addresses change. */
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Announcer } from '../../node/announcer.js'

/** A DHT whose provide() calls are counted and finish only when `release()` is called. */
function fakeDht (): { dht: ConstructorParameters<typeof Announcer>[0]['dht'], calls: () => number, release: () => void } {
  let calls = 0
  let release: () => void = () => {}
  let gate = new Promise<void>(resolve => { release = resolve })
  return {
    dht: {
      provide: async function * () { calls++; await gate } as any,
      cancelReprovide: async () => {}
    },
    calls: () => calls,
    release: () => {
      const open = release
      gate = new Promise<void>(resolve => { release = resolve })
      open()
    }
  }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

describe('Announcer', () => {
  const announcers: Announcer[] = []
  afterEach(async () => { await Promise.all(announcers.splice(0).map(async a => { await a.stop() })) })
  const make = (dht: ConstructorParameters<typeof Announcer>[0]['dht']): Announcer => {
    const a = new Announcer({ dht, modelId: 'm', start: 0, end: 2, intervalMs: 60_000, log: pino({ level: 'silent' }) })
    announcers.push(a)
    return a
  }

  it('announceNow() during a round starts the next round as soon as it ends, not an interval later', async () => {
    const { dht, calls, release } = fakeDht()
    const a = make(dht)
    a.start()
    await settle()
    expect(calls()).toBe(2) // one provide per block
    a.announceNow()
    a.announceNow() // asked twice during one round: one more round
    await settle()
    expect(calls()).toBe(2) // the round in flight is not doubled
    release()
    await settle()
    expect(a.rounds).toBe(1)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(calls()).toBe(4)
    release()
    await settle()
    expect(a.rounds).toBe(2)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(calls()).toBe(4) // then back to the interval
  })

  it('announceNow() between rounds starts one at once; after stop() it does nothing', async () => {
    const { dht, calls, release } = fakeDht()
    const a = make(dht)
    a.start()
    await settle()
    release()
    await settle()
    expect(calls()).toBe(2)
    a.announceNow()
    await settle()
    expect(calls()).toBe(4)
    release()
    await a.stop()
    a.announceNow()
    await settle()
    expect(calls()).toBe(4)
  })
})
