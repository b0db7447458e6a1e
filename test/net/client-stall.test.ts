/**
 * A client whose own event loop stalls does not blame the server for it. onnxruntime's Node
 * binding computes on the main thread, so a client busy with its models can leave a result or
 * a ping echo unread in its socket past a timeout; libuv runs due timers before it reads
 * sockets, so a plain timer then fails a server that had answered in time.
 */
import { createServer, connect, type Server } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SpanSession } from '../../client/swarm/span-session.js'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { listeningTimeout } from '../../net/listening-timeout.js'
import { PING_PROTOCOL } from '../../net/rtt-probe.js'
import { TimeoutError } from '../../protocol/errors.js'
import { encodeTensor } from '../../protocol/tensor-codec.js'
import { fakeInferenceServer } from '../helpers/wire-client.js'

const C = 64

/** `target[key]`, a method bound to target (private fields break through a proxy's `this`). */
function bound (target: object, key: string | symbol): unknown {
  const value: unknown = Reflect.get(target, key, target)
  return typeof value === 'function' ? value.bind(target) : value
}

/** Holds this thread's event loop for `ms`, as a synchronous onnxruntime run does. */
function stall (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* busy */ }
}

describe('listeningTimeout', () => {
  let echo: Server
  let port = 0
  beforeAll(async () => {
    echo = createServer(socket => { socket.on('data', data => socket.write(data)) })
    await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
    port = (echo.address() as { port: number }).port
  })
  afterAll(async () => { await new Promise(resolve => echo.close(resolve)) })

  it('aborts after its time on a free event loop', async () => {
    const began = performance.now()
    const { signal } = listeningTimeout(150)
    await new Promise(resolve => signal.addEventListener('abort', resolve, { once: true }))
    expect((signal.reason as DOMException).name).toBe('TimeoutError')
    expect(performance.now() - began).toBeGreaterThanOrEqual(145)
    expect(performance.now() - began).toBeLessThan(400)
  })

  it('reads an answer that came while the loop was held past the timeout (a plain timer fails it)', async () => {
    const answeredFirst = async (signal: AbortSignal): Promise<boolean> => {
      const socket = connect(port, '127.0.0.1')
      await new Promise(resolve => socket.once('connect', resolve))
      const outcome = new Promise<boolean>(resolve => {
        socket.once('data', () => { resolve(true) })
        signal.addEventListener('abort', () => { resolve(false) }, { once: true })
      })
      socket.write('ping')
      stall(400) // the echo arrives within a millisecond, unread until the loop is free
      const answered = await outcome
      socket.destroy()
      return answered
    }
    const timeout = listeningTimeout(100)
    expect(await answeredFirst(timeout.signal)).toBe(true)
    timeout.clear()
    expect(await answeredFirst(AbortSignal.timeout(100))).toBe(false)
  })

  it('still runs out while the loop stalls again and again', async () => {
    const began = performance.now()
    const { signal } = listeningTimeout(200)
    while (!signal.aborted && performance.now() - began < 5000) {
      stall(120)
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    expect(signal.aborted).toBe(true)
    expect(performance.now() - began).toBeLessThan(3000)
  })
})

describe('a session whose client stalls', () => {
  let server: Libp2p
  let client: PetalHost
  let answerAfterMs = 100
  /** Set by a test: how long the client stalls right after it sends a ping probe. */
  let stallAfterPingMs = 0

  beforeAll(async () => {
    server = await fakeInferenceServer((framed) => (msg) => {
      if (msg.type === 'open') void framed.write({ type: 'opened', sessionId: 'fake', start: msg.start, end: msg.end, maxTokens: 64 })
      if (msg.type !== 'run') return
      const T = msg.hidden.dims[1] ?? 1
      setTimeout(() => { void framed.write({ type: 'result', runId: msg.runId, start: msg.start, hidden: encodeTensor(new Float32Array(T * C), [1, T, C]), computeMs: 0, queuedMs: 0 }) }, answerAfterMs)
    })
    await server.handle(PING_PROTOCOL, (stream) => { // echoes, as libp2p's ping service does
      stream.addEventListener('message', (evt) => { stream.send(evt.data.subarray()) })
      stream.addEventListener('remoteCloseWrite', () => { void stream.close().catch(() => {}) })
    })
    client = await createPetalHost({ dhtServer: false })
    await client.dial(multiaddr(server.getMultiaddrs()[0]!.toString()))
  })
  afterAll(async () => {
    await client?.stop()
    await server?.stop()
  })

  /** The client host, but a ping it sends is followed by a stall of stallAfterPingMs. */
  const stallingHost = (): PetalHost => {
    const stallingStream = (stream: Stream): Stream => new Proxy(stream, {
      get (target, key) {
        if (key !== 'send') return bound(target, key)
        return (data: Uint8Array) => {
          const ok = target.send(data)
          stall(stallAfterPingMs)
          return ok
        }
      }
    })
    const stallingConnection = (connection: Connection): Connection => new Proxy(connection, {
      get (target, key) {
        if (key !== 'newStream') return bound(target, key)
        return async (protocols: string | string[], options?: object) => {
          const stream = await target.newStream(protocols, options)
          return protocols === PING_PROTOCOL ? stallingStream(stream) : stream
        }
      }
    })
    return new Proxy(client, {
      get (target, key) {
        if (key !== 'dial') return bound(target, key)
        return async (peer: PeerId, options?: object) => stallingConnection(await target.dial(peer, options))
      }
    })
  }
  const x = new Float32Array(C)

  it('takes a result that came while it stalled past its timeout', async () => {
    answerAfterMs = 100
    const session = await SpanSession.open({ host: client, peerId: server.peerId, modelId: 'stories260k', start: 0, end: 2, maxTokens: 64, hiddenSize: C, timeoutMs: 300, liveness: false })
    const result = session.run(1, 0, x)
    await new Promise(resolve => setTimeout(resolve, 20)) // the run is on the wire
    stall(800) // the result comes at ~100 ms, read after 820
    await expect(result).resolves.toBeDefined()
    await session.close()
  })

  it('does not take the server for frozen when the ping echo came while it stalled', async () => {
    answerAfterMs = 1200
    stallAfterPingMs = 900
    const session = await SpanSession.open({ host: stallingHost(), peerId: server.peerId, modelId: 'stories260k', start: 0, end: 2, maxTokens: 64, hiddenSize: C, timeoutMs: 5000, liveness: { afterMs: 100, timeoutMs: 300 } })
    // overdue after 100 ms: the probe's ping goes out, then the client stalls 900 ms
    await expect(session.run(1, 0, x)).resolves.toBeDefined()
    stallAfterPingMs = 0
    await session.close()
  })

  it('a result that never comes still times out while the client stalls now and then', async () => {
    answerAfterMs = 60_000
    const session = await SpanSession.open({ host: client, peerId: server.peerId, modelId: 'stories260k', start: 0, end: 2, maxTokens: 64, hiddenSize: C, timeoutMs: 300, liveness: false })
    const began = performance.now()
    let err: unknown
    const run = session.run(1, 0, x).catch((e: unknown) => { err = e })
    while (err === undefined && performance.now() - began < 5000) {
      stall(150)
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    await run
    expect(err).toBeInstanceOf(TimeoutError)
    expect(performance.now() - began).toBeLessThan(2000)
    await session.close()
  })
})
