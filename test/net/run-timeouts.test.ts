/**
 * When a client gives up on a run (SpanSession's timeoutMs). A wait counts from the later of
 * its own start and the server's last word on the session (a result, a progress frame): a
 * session's runs compute in order, so runs queued behind a long one, or a long run that
 * reports progress, are not overdue while the server keeps answering. A run that the server
 * skipped (later runs answered) fails once it has waited timeoutMs, and so does every run of a
 * server that says nothing. Closing a session never waits on a server that reads nothing.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SpanSession } from '../../client/swarm/span-session.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { TimeoutError } from '../../protocol/errors.js'
import { encodeTensor } from '../../protocol/tensor-codec.js'
import { fakeInferenceServer } from '../helpers/wire-client.js'

const C = 64
const TIMEOUT_MS = 600

/** How the fake server answers runs. */
type Behaviour = 'in order, 250 ms each' | 'one long run with progress' | 'skips run 1' | 'silent' | 'reads nothing'

describe('run timeouts', () => {
  let server: Libp2p
  let client: PetalHost
  let behaviour: Behaviour = 'silent'

  beforeAll(async () => {
    server = await fakeInferenceServer((framed, stream) => {
      let busyUntil = 0 // runs compute one after another, as a server's queue does
      return (msg) => {
        const answer = (): void => { void framed.write({ type: 'result', runId: msg.runId, start: msg.start, hidden: encodeTensor(new Float32Array((msg.hidden.dims[1] ?? 1) * C), [1, msg.hidden.dims[1] ?? 1, C]), computeMs: 0, queuedMs: 0 }) }
        if (msg.type === 'open') {
          void framed.write({ type: 'opened', sessionId: 'fake', start: msg.start, end: msg.end, maxTokens: 64 })
          if (behaviour === 'reads nothing') stream.pause() // no more reads, nor window updates: the client's writes back up
        }
        if (msg.type !== 'run') return
        if (behaviour === 'in order, 250 ms each') {
          busyUntil = Math.max(busyUntil, performance.now()) + 250
          setTimeout(answer, busyUntil - performance.now())
        } else if (behaviour === 'one long run with progress') {
          for (let i = 1; i <= 5; i++) setTimeout(() => { void framed.write({ type: 'progress', runId: msg.runId, rows: i }) }, 300 * i)
          setTimeout(answer, 1800)
        } else if (behaviour === 'skips run 1' && msg.runId !== 1) {
          answer()
        }
      }
    })
    client = await createPetalHost({ dhtServer: false })
    await client.dial(multiaddr(server.getMultiaddrs()[0]!.toString()))
  })

  afterAll(async () => {
    await client?.stop()
    await server?.stop()
  })

  const open = async (b: Behaviour): Promise<SpanSession> => {
    behaviour = b
    return await SpanSession.open({ host: client, peerId: server.peerId, modelId: 'stories260k', start: 0, end: 2, maxTokens: 64, hiddenSize: C, timeoutMs: TIMEOUT_MS, liveness: false })
  }
  const x = new Float32Array(C)

  it('runs queued behind one another are waited for while earlier ones come back', async () => {
    const session = await open('in order, 250 ms each')
    const began = performance.now()
    // the fifth is answered 1.25 s after it was sent: past the timeout, but the server spoke every 250 ms
    const outs = await Promise.all([1, 2, 3, 4, 5].map(async id => await session.run(id, id - 1, x)))
    expect(outs).toHaveLength(5)
    expect(performance.now() - began).toBeGreaterThan(2 * TIMEOUT_MS)
    await session.close()
  })

  it('a long run that reports progress is waited for', async () => {
    const session = await open('one long run with progress')
    const began = performance.now()
    await session.run(1, 0, x)
    expect(performance.now() - began).toBeGreaterThan(1700)
    await session.close()
  })

  it('a run the server skipped fails after the timeout, while the ones after it are answered', async () => {
    const session = await open('skips run 1')
    const began = performance.now()
    const skipped = session.run(1, 0, x).catch((err: unknown) => err)
    await session.run(2, 1, x)
    // later runs keep the session talking: run 1 still fails, overtaken
    const keepTalking = setInterval(() => { void session.run(3, 2, x).catch(() => {}) }, 100)
    const err = await skipped
    clearInterval(keepTalking)
    expect(err).toBeInstanceOf(TimeoutError)
    expect((err as Error).message).toMatch(/while later runs did/)
    expect(performance.now() - began).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
    expect(performance.now() - began).toBeLessThan(TIMEOUT_MS + 1000)
    await session.close()
  })

  it('closing a session whose server reads nothing ends within about a second', async () => {
    const session = await open('reads nothing')
    // 768 KiB of runs against yamux's 256 KiB window: the stream's writes wait for a drain that never comes
    for (let id = 1; id <= 6; id++) session.run(id, 0, new Float32Array(512 * C)).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 200))
    const began = performance.now()
    await session.close()
    expect(performance.now() - began).toBeLessThan(3000)
  })

  it('a server that says nothing fails every run after the timeout', async () => {
    const session = await open('silent')
    const began = performance.now()
    const errs = await Promise.all([1, 2].map(async id => await session.run(id, id - 1, x).catch((err: unknown) => err)))
    expect(errs.every(e => e instanceof TimeoutError)).toBe(true)
    expect(performance.now() - began).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
    expect(performance.now() - began).toBeLessThan(TIMEOUT_MS + 1000)
    await session.close()
  })
})
