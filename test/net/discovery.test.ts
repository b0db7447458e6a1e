/**
 * findServers in a loopback swarm of in-process servers: provider records name the
 * candidates, /petal/1/info decides who is listed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findServers } from '../../net/discovery.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { PetalServer } from '../../node/server.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

const THROUGHPUT = { decodeTokensPerSec: 1000, prefillTokensPerSec: 10000 }
const spans = (found: Awaited<ReturnType<typeof findServers>>): number[][] => found.map(s => [s.info.start, s.info.end])

describe('findServers', () => {
  let a: PetalServer // [0, 2)
  let b: PetalServer // [2, 5)
  let client: PetalHost

  beforeAll(async () => {
    a = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 2 }, throughput: THROUGHPUT })
    await a.start()
    b = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 2, end: 5 }, bootstrap: [a.address], throughput: THROUGHPUT })
    await b.start()
    client = await createPetalHost({ dhtServer: false, bootstrap: [a.address] })
  })

  afterAll(async () => {
    await client?.stop()
    await Promise.all([a?.stop(), b?.stop()])
  })

  it('finds every server of the model through the DHT, with info and RTT', async () => {
    // only connected to a: b comes from provider records
    const found = await findServers(client, 'stories260k', 5, { timeoutMs: 3000, includeConnected: false, peerExchange: false })
    expect(spans(found)).toEqual([[0, 2], [2, 5]])
    expect(found.map(s => s.info.peerId)).toEqual([a.host.peerId.toString(), b.host.peerId.toString()])
    for (const s of found) expect(s.rttMs).toBeGreaterThan(0)
    expect(await findServers(client, 'another-model', 5, { timeoutMs: 1000 })).toEqual([])
  })

  it('finds servers through peer exchange when the DHT lookups find nothing', async () => {
    // a fresh client that knows only a, and lookups that time out at once: without peer
    // exchange it finds a alone; with it, b comes from a's info (knownServers)
    const fresh = await createPetalHost({ dhtServer: false, bootstrap: [a.address] })
    const asked = new Set<string>()
    expect(spans(await findServers(fresh, 'stories260k', 5, { timeoutMs: 1, peerExchange: false, asked }))).toEqual([[0, 2]])
    expect([...asked]).toEqual([a.host.peerId.toString()]) // b was not missed for want of an answer: nobody asked it
    expect(spans(await findServers(fresh, 'stories260k', 5, { timeoutMs: 1, asked }))).toEqual([[0, 2], [2, 5]])
    expect(asked).toContain(b.host.peerId.toString())
    await fresh.stop()
  })

  it('does not list a server that has left, although its provider records remain', async () => {
    await b.stop()
    const asked = new Set<string>()
    const found = await findServers(client, 'stories260k', 5, { timeoutMs: 2000, asked })
    expect(spans(found)).toEqual([[0, 2]])
    expect(asked).toContain(b.host.peerId.toString()) // asked, and no answer: a client's directory drops it
  })

  it('rejects with the caller signal reason', async () => {
    const reason = new Error('caller gave up')
    await expect(findServers(client, 'stories260k', 5, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
  })
})
