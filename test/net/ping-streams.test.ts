import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPetalHost, type PetalHost } from '../../net/host.js'

const PROTOCOL = '/petal-test/hold/1'

/**
 * Discovery pings servers while libp2p's connection monitor pings the same connections and
 * aborts a connection whose ping fails. A burst of pings must neither fail nor take down
 * another stream on the connection (an inference session, in real use).
 */
describe('pings on a connection that carries a session', () => {
  let client: PetalHost
  let server: PetalHost
  beforeAll(async () => {
    server = await createPetalHost({ dhtServer: true })
    await server.handle(PROTOCOL, (stream) => { stream.addEventListener('message', () => {}) })
    client = await createPetalHost({ dhtServer: false, monitorPingIntervalMs: 20 })
  })
  afterAll(async () => { await Promise.all([client.stop(), server.stop()]) })

  it('concurrent pings all succeed and the other stream stays open while the monitor pings too', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs()[0] as Parameters<PetalHost['dialProtocol']>[0], PROTOCOL)
    let closedWith: string | undefined
    stream.addEventListener('close', (evt) => { closedWith = (evt as { error?: Error }).error?.message ?? 'closed' })
    const failures: string[] = []
    const until = Date.now() + 1500 // ~75 monitor pings meet ~100 bursts of our own
    while (Date.now() < until && closedWith === undefined) {
      await Promise.all([0, 1, 2].map(async () => {
        await client.services.ping.ping(server.peerId, { signal: AbortSignal.timeout(2000) }).catch((err: Error) => { failures.push(err.message) })
      }))
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    expect(closedWith).toBeUndefined()
    expect(failures).toEqual([])
    expect(stream.status).toBe('open')
  })
})
