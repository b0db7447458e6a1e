import { describe, expect, it } from 'vitest'
import { BadMessageError, TooLargeError } from '../../protocol/errors.js'
import { encodeFrame, FrameDecoder, varintLength, writeVarint } from '../../protocol/frames.js'
import { decodeTensor, encodeTensor } from '../../protocol/tensor-codec.js'

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.byteLength }
  return out
}

const messages: unknown[] = [
  { type: 'open', modelId: 'org/model', start: 0, end: 4, maxTokens: 2048 },
  { type: 'run', runId: 7, start: 12, hidden: encodeTensor(new Float32Array([1, 2, 3, 4, 5, 6]), [1, 2, 3]), push: [{ peerId: 'p', sessionId: 's' }] },
  { type: 'cancel', runIds: [1, 2, 3] },
  { type: 'close' }
]

describe('frames', () => {
  it('writes and sizes varints', () => {
    for (const n of [0, 1, 127, 128, 300, 16383, 16384, 2 ** 21, 2 ** 31, 2 ** 40]) {
      const out = new Uint8Array(10)
      expect(writeVarint(n, out, 0)).toBe(varintLength(n))
    }
    const out = new Uint8Array(2)
    writeVarint(300, out, 0)
    expect(Array.from(out)).toEqual([0xac, 0x02])
  })

  it('round-trips messages, with bytes as Uint8Array', () => {
    const decoder = new FrameDecoder()
    const got = decoder.push(concat(messages.map((m) => encodeFrame(m))))
    expect(got).toHaveLength(messages.length)
    expect(got[0]).toEqual(messages[0])
    expect(got[2]).toEqual(messages[2])
    expect(got[3]).toEqual(messages[3])
    const run = got[1] as { hidden: { dtype: string, dims: number[], data: unknown }, push: unknown }
    expect(run.push).toEqual([{ peerId: 'p', sessionId: 's' }])
    expect(run.hidden.data).toBeInstanceOf(Uint8Array)
    expect(run.hidden.dims).toEqual([1, 2, 3])
    expect(Array.from(decodeTensor(run.hidden).data)).toEqual([1, 2, 3, 4, 5, 6])
    expect(decoder.bufferedBytes).toBe(0)
  })

  it('skips undefined fields', () => {
    const [msg] = new FrameDecoder().push(encodeFrame({ type: 'run', push: undefined, a: 1 }))
    expect(msg).toEqual({ type: 'run', a: 1 })
    expect(Object.keys(msg as object)).not.toContain('push')
  })

  it('decodes frames split at every byte boundary', () => {
    const bytes = concat(messages.map((m) => encodeFrame(m)))
    const whole = new FrameDecoder().push(bytes)
    for (let cut = 1; cut < bytes.byteLength; cut++) {
      const decoder = new FrameDecoder()
      const out = [...decoder.push(bytes.subarray(0, cut)), ...decoder.push(bytes.subarray(cut))]
      expect(out).toEqual(whole)
    }
  })

  it('decodes byte-by-byte and from chunk lists', () => {
    const bytes = concat(messages.map((m) => encodeFrame(m)))
    const decoder = new FrameDecoder()
    const out: unknown[] = []
    for (let i = 0; i < bytes.byteLength; i++) out.push(...decoder.push(bytes.subarray(i, i + 1)))
    expect(out).toHaveLength(messages.length)
    const list = [bytes.subarray(0, 5), bytes.subarray(5, 40), bytes.subarray(40)] // iterable, like Uint8ArrayList
    expect(new FrameDecoder().push(list)).toHaveLength(messages.length)
    expect(new FrameDecoder().push({ subarray: () => bytes })).toHaveLength(messages.length)
    decoder.end()
  })

  it('round-trips a multi-MB tensor fast', () => {
    const data = new Float32Array(4 << 20).map((_, i) => i % 1000)
    const t0 = performance.now()
    const frame = encodeFrame({ type: 'run', runId: 1, start: 0, hidden: encodeTensor(data, [1, 1024, 4096]) })
    const t1 = performance.now()
    expect(frame.byteLength).toBeGreaterThan(16 << 20)
    const decoder = new FrameDecoder()
    const chunks: unknown[] = []
    for (let i = 0; i < frame.byteLength; i += 65536) chunks.push(...decoder.push(frame.subarray(i, i + 65536)))
    const [msg] = chunks as Array<{ hidden: never }>
    const back = decodeTensor(msg!.hidden).data
    expect(back[4095]).toBe(95)
    expect(back[(4 << 20) - 1]).toBe(((4 << 20) - 1) % 1000)
    expect(t1 - t0).toBeLessThan(500) // typically ~10 ms
    // a small frame after a big one is independent of it
    const small = encodeFrame({ x: 1 })
    expect(new FrameDecoder().push(small)).toEqual([{ x: 1 }])
    expect(small.buffer.byteLength).toBeLessThan(1 << 20)
  })

  it('rejects a frame over maxFrameBytes from its header, before buffering the body', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1000 })
    const header = new Uint8Array(4)
    const n = writeVarint(1001, header, 0)
    expect(() => decoder.push(header.subarray(0, n))).toThrow(TooLargeError) // only the header has arrived
    expect(() => decoder.push(new Uint8Array(10))).toThrow(TooLargeError) // failed for good
    expect(() => new FrameDecoder({ maxFrameBytes: 1000 }).push(encodeFrame({ data: new Uint8Array(500) }))).not.toThrow()
    const huge = new Uint8Array(8)
    expect(() => new FrameDecoder().push(huge.subarray(0, writeVarint(2 ** 40, huge, 0)))).toThrow(expect.objectContaining({ code: 'TOO_LARGE' }))
  })

  it('refuses to encode a frame over maxFrameBytes', () => {
    expect(() => encodeFrame({ data: new Uint8Array(2000) }, { maxFrameBytes: 1000 })).toThrow(TooLargeError)
  })

  it('turns garbage into BAD_MESSAGE', () => {
    const cases: Array<[string, Uint8Array]> = [
      ['truncated msgpack', Uint8Array.from([3, 0x93, 0x01, 0x02])], // array of 3 with only 2 items
      ['trailing bytes', Uint8Array.from([3, 0x01, 0x02, 0x03])], // three values in one frame
      ['reserved byte', Uint8Array.from([1, 0xc1])],
      ['not a map', Uint8Array.from([1, 0x05])],
      ['array', Uint8Array.from([2, 0x91, 0x05])],
      ['zero length', Uint8Array.from([0])],
      ['endless varint', Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
      ['unknown extension', Uint8Array.from([3, 0xd4, 0x33, 0x00])]
    ]
    for (const [name, bytes] of cases) {
      expect(() => new FrameDecoder().push(bytes), name).toThrow(BadMessageError)
    }
    // plain text reads as a length of 71 ('G') and waits for more; the end then finds a partial frame
    const decoder = new FrameDecoder()
    expect(decoder.push(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toEqual([])
    expect(() => decoder.end()).toThrow(BadMessageError)
  })

  it('end() fails on a partial frame', () => {
    const frame = encodeFrame({ a: 1 })
    const decoder = new FrameDecoder()
    decoder.push(frame.subarray(0, 2))
    expect(() => decoder.end()).toThrow(BadMessageError)
  })
})
