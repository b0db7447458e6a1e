import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { measureRtt, PING_PROTOCOL } from '../../net/rtt-probe.js'

/**
 * The RTT probe times echoes on one open ping stream: the stream's protocol negotiation (a
 * round trip of its own, which libp2p's ping() pays every time) is not in the figure.
 */
describe('RTT probe over one ping stream', () => {
  let client: PetalHost
  let echo: PetalHost // answers ping with its own handler: echoes each chunk after ECHO_DELAY_MS
  let plain: PetalHost // libp2p's own ping service
  /** Bytes each ping stream carried (libp2p's connection monitor pings too: one 32-byte ping per stream). */
  const streamBytes: number[] = []
  const ECHO_DELAY_MS = 15
  beforeAll(async () => {
    echo = await createPetalHost({ dhtServer: true })
    await echo.unhandle(PING_PROTOCOL)
    await echo.handle(PING_PROTOCOL, (stream) => {
      const index = streamBytes.push(0) - 1
      stream.addEventListener('message', (evt) => {
        const data = evt.data.subarray()
        streamBytes[index] = (streamBytes[index] ?? 0) + data.byteLength
        setTimeout(() => { if (stream.status === 'open') stream.send(data) }, ECHO_DELAY_MS)
      })
      stream.addEventListener('remoteCloseWrite', () => { void stream.close().catch(() => {}) })
    })
    plain = await createPetalHost({ dhtServer: true })
    client = await createPetalHost({ dhtServer: false })
    await client.dial(echo.getMultiaddrs()[0] as Parameters<PetalHost['dial']>[0])
    await client.dial(plain.getMultiaddrs()[0] as Parameters<PetalHost['dial']>[0])
  })
  afterAll(async () => { await Promise.all([client.stop(), echo.stop(), plain.stop()]) })

  it('times every echo on a single stream and returns the best', async () => {
    const rtt = await measureRtt(client, echo.peerId, { trips: 3, signal: AbortSignal.timeout(5000) })
    expect(streamBytes).toContain(3 * 32) // all three pings on one stream
    expect(rtt).toBeGreaterThanOrEqual(ECHO_DELAY_MS - 1) // timers may fire up to 1 ms early
    expect(rtt).toBeLessThan(ECHO_DELAY_MS + 50)
  })

  it('measures a loopback peer running libp2p ping in well under a millisecond or so, with sub-ms precision', async () => {
    const rtt = await measureRtt(client, plain.peerId, { signal: AbortSignal.timeout(5000) })
    expect(rtt).toBeGreaterThan(0)
    expect(rtt).toBeLessThan(20)
    expect(Number.isInteger(rtt)).toBe(false)
  })

  it('spaces the echoes by gapMs without counting the gaps', async () => {
    const began = performance.now()
    const rtt = await measureRtt(client, plain.peerId, { trips: 3, gapMs: 30, signal: AbortSignal.timeout(5000) })
    expect(performance.now() - began).toBeGreaterThanOrEqual(59)
    expect(rtt).toBeLessThan(20)
  })

  it('rejects when the deadline passes before the echo', async () => {
    await expect(measureRtt(client, echo.peerId, { trips: 1, signal: AbortSignal.timeout(ECHO_DELAY_MS / 3) })).rejects.toThrow()
  })
})
