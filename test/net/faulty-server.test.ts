/**
 * A server that answers with the wrong shape (a bug, or a peer that lies) must not hand the
 * client garbage: the session is lost with an error that says so, and the client's failover
 * (which treats a lost session as the server's failure) moves the blocks elsewhere.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectionLostError, SpanSession } from '../../client/swarm/span-session.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { encodeTensor } from '../../protocol/tensor-codec.js'
import { fakeInferenceServer } from '../helpers/wire-client.js'

const C = 64

/** How the fake server gets a run wrong. */
type Fault = 'more rows' | 'other hidden size' | 'other start' | 'carried outputs' | 'other span'

describe('a server that answers with the wrong shape', () => {
  let server: Libp2p
  let client: PetalHost
  let fault: Fault = 'more rows'

  beforeAll(async () => {
    // opens any session; answers each run as `fault` says
    server = await fakeInferenceServer(framed => (msg) => {
      if (msg.type === 'open') {
        const end = fault === 'other span' ? msg.end + 1 : msg.end
        void framed.write({ type: 'opened', sessionId: 'fake', start: msg.start, end, maxTokens: 64 })
      } else if (msg.type === 'run') {
        const T = (msg.hidden.dims[1] ?? 1) + (fault === 'more rows' ? 1 : 0)
        const width = fault === 'other hidden size' ? C / 2 : C
        const start = fault === 'other start' ? msg.start + 1 : msg.start
        const hidden = encodeTensor(new Float32Array(T * width), [1, T, width])
        // outputs of earlier hops, carried though the run asked for none
        const carried = fault === 'carried outputs' ? { carried: [hidden] } : {}
        void framed.write({ type: 'result', runId: msg.runId, start, hidden, computeMs: 0, queuedMs: 0, ...carried })
      }
    })
    client = await createPetalHost({ dhtServer: false })
  })

  afterAll(async () => {
    await client?.stop()
    await server?.stop()
  })

  const open = async (): Promise<SpanSession> => {
    await client.dial(multiaddr(server.getMultiaddrs()[0]!.toString()))
    return await SpanSession.open({ host: client, peerId: server.peerId, modelId: 'stories260k', start: 0, end: 2, maxTokens: 64, hiddenSize: C, timeoutMs: 5000 })
  }

  for (const f of ['more rows', 'other hidden size', 'other start', 'carried outputs'] as const) {
    it(`${f}: the run fails as the server's fault, and so do the runs after it`, async () => {
      fault = f
      const session = await open()
      const err = await session.run(1, 0, new Float32Array(2 * C)).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConnectionLostError) // the client's failover bans it and re-routes
      expect((err as Error).message).toMatch(f === 'carried outputs' ? /expected \[1, 2, 64\] from 0 \(1 carried outputs, expected 0\): a faulty server/ : /answered run 1 with dims .* expected \[1, 2, 64\] from 0: a faulty server/)
      expect(session.lost).toBe(true)
      await expect(session.run(2, 0, new Float32Array(C))).rejects.toBeInstanceOf(ConnectionLostError)
    })
  }

  it('a session opened on other blocks than asked for is refused', async () => {
    fault = 'other span'
    await expect(open()).rejects.toThrow(/opened blocks \[0,3\) when asked for \[0,2\): a faulty server/)
  })
})
