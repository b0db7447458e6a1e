import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errorFromFrame, TooLargeError } from '../../protocol/errors.js'
import { FramedStream } from '../../protocol/framed-stream.js'
import { wholeMessageNoise } from '../../net/whole-message-noise.js'
import { parseErrorFrame } from '../../protocol/inference-replies.js'
import { decodeTensor, encodeTensor } from '../../protocol/tensor-codec.js'

const ECHO = '/petal-test/echo/1'
const SINK = '/petal-test/sink/1'

/** The server writes each noise message whole (as Petal nodes do), the client as stock noise does. */
async function node (encrypter = noise()): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [encrypter],
    streamMuxers: [yamux()]
  })
}

describe('FramedStream over libp2p (tcp + noise + yamux on 127.0.0.1; whole-message noise on one side)', () => {
  let server: Libp2p
  let client: Libp2p
  const serverEnds: Array<Error | undefined> = []
  const sinks: FramedStream[] = []

  beforeAll(async () => {
    server = await node(wholeMessageNoise())
    client = await node()
    // echo: every frame goes back as is; the handler builds the FramedStream synchronously
    await server.handle(ECHO, (stream) => {
      const framed: FramedStream = new FramedStream(stream, {
        onFrame: (frame) => { framed.write(frame).catch(() => {}) },
        onEnd: (err) => {
          serverEnds.push(err)
          if (err === undefined) framed.close().catch(() => {})
        }
      })
    })
    // sink: keeps the stream and never reads (iterator mode with a tiny queue)
    await server.handle(SINK, (stream) => {
      sinks.push(new FramedStream(stream, { maxQueuedFrames: 4 }))
    })
  })

  afterAll(async () => {
    await client?.stop()
    await server?.stop()
  })

  async function dial (protocol = ECHO): Promise<FramedStream> {
    const stream = await client.dialProtocol(server.getMultiaddrs()[0]!, protocol)
    return new FramedStream(stream)
  }

  /** Dials the sink and returns both ends. */
  async function dialSink (): Promise<[client: FramedStream, server: FramedStream]> {
    const before = sinks.length
    const framed = await dial(SINK)
    await framed.write({ hello: 1 }) // the remote handler runs once data flows
    await expect.poll(() => sinks.length).toBe(before + 1)
    const sink = sinks[before]!
    expect((await sink.read()).value).toEqual({ hello: 1 })
    return [framed, sink]
  }

  it('echoes many small frames in order', async () => {
    const framed = await dial()
    const n = 500
    const writes = Array.from({ length: n }, async (_, i) => { await framed.write({ type: 'ping', i, text: 'x'.repeat(i % 50) }) })
    await Promise.all(writes)
    for (let i = 0; i < n; i++) {
      const next = await framed.read()
      expect(next).toEqual({ done: false, value: { type: 'ping', i, text: 'x'.repeat(i % 50) } })
    }
    await framed.close()
    expect(await framed.read()).toEqual({ done: true, value: undefined }) // the server closed after our close
  })

  it('echoes a 20 MiB tensor frame intact', async () => {
    const framed = await dial()
    const values = new Float32Array(5 * 1024 * 1024).map((_, i) => (i % 4099) - 2000.25) // 20 MiB
    await framed.write({ type: 'result', runId: 1, start: 0, hidden: encodeTensor(values, [1, 1280, 4096]) })
    await framed.write({ type: 'after' })
    const big = await framed.read()
    expect(big.done).toBe(false)
    const msg = big.value as { hidden: Parameters<typeof decodeTensor>[0] }
    const back = decodeTensor(msg.hidden).data
    expect(back.length).toBe(values.length)
    let mismatches = 0
    for (let i = 0; i < values.length; i++) if (back[i] !== values[i]) mismatches++
    expect(mismatches).toBe(0)
    expect((await framed.read()).value).toEqual({ type: 'after' })
    await framed.close()
  })

  it('iterates frames with for await', async () => {
    const framed = await dial()
    for (let i = 0; i < 3; i++) await framed.write({ i })
    await framed.close()
    const got: unknown[] = []
    for await (const frame of framed) got.push(frame)
    expect(got).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }])
  })

  it('answers garbage with an error frame, closes, and keeps listening', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs()[0]!, ECHO)
    const framed = new FramedStream(stream)
    stream.send(Uint8Array.from([3, 0xc1, 0xc1, 0xc1])) // a 3-byte frame of reserved msgpack bytes
    const reply = await framed.read()
    expect(reply.done).toBe(false)
    const err = errorFromFrame(parseErrorFrame(reply.value))
    expect(err.code).toBe('BAD_MESSAGE')
    expect(await framed.read()).toEqual({ done: true, value: undefined }) // the server closed its side
    await framed.close()
    await expect.poll(() => serverEnds.some((e) => (e as { code?: string } | undefined)?.code === 'BAD_MESSAGE')).toBe(true)
    // the listener is unharmed
    const again = await dial()
    await again.write({ ok: true })
    expect((await again.read()).value).toEqual({ ok: true })
    await again.close()
  })

  it('answers an oversized frame header with TOO_LARGE before the body arrives', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs()[0]!, ECHO)
    const framed = new FramedStream(stream)
    stream.send(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x01])) // varint 2^28 = 256 MiB > 64 MiB limit
    const reply = await framed.read()
    expect(errorFromFrame(parseErrorFrame(reply.value)).code).toBe('TOO_LARGE')
    await framed.close()
  })

  it('refuses to send a frame over its own limit', async () => {
    const stream = await client.dialProtocol(server.getMultiaddrs()[0]!, ECHO)
    const framed = new FramedStream(stream, { limits: { maxFrameBytes: 1024 } })
    await expect(framed.write({ data: new Uint8Array(4096) })).rejects.toBeInstanceOf(TooLargeError)
    await framed.close()
  })

  it('fails a reader that lets too many frames pile up', async () => {
    const [framed, sink] = await dialSink()
    for (let i = 0; i < 6; i++) await framed.write({ i })
    const reply = await framed.read()
    expect(errorFromFrame(parseErrorFrame(reply.value)).code).toBe('TOO_LARGE')
    // the 4 queued frames are still readable, then the error
    for (let i = 0; i < 4; i++) expect((await sink.read()).value).toEqual({ i })
    await expect(sink.read()).rejects.toMatchObject({ code: 'TOO_LARGE' })
    await framed.close()
  })

  it('surfaces a remote reset as an error', async () => {
    const [framed, sink] = await dialSink()
    sink.abort(new Error('server gave up'))
    await expect(framed.read()).rejects.toThrow()
    expect(await framed.closed).toBeInstanceOf(Error)
    await expect(framed.write({ late: true })).rejects.toThrow()
  })

  it('follows the AbortSignal contract on read()', async () => {
    const framed = await dial()
    // already aborted: rejects at once with the reason
    const reason = new Error('stop now')
    await expect(framed.read({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    // aborted while waiting: rejects with the reason, and the frame stays for the next read
    const controller = new AbortController()
    const pending = framed.read({ signal: controller.signal })
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    await framed.write({ kept: true })
    // success: resolves and removes its listener (no late rejection when aborted afterwards)
    const later = new AbortController()
    expect((await framed.read({ signal: later.signal })).value).toEqual({ kept: true })
    later.abort(reason)
    await expect(framed.write({ x: 1 }, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    await framed.close()
  })
})
