import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { joinSentChunks } from '../../net/whole-message-noise.js'

/** A stream that records what reaches its send(). */
interface Recorder {
  send: (data: Uint8Array | Uint8ArrayList) => boolean
  sent: Array<Uint8Array | Uint8ArrayList>
}

function recorder (): Recorder {
  const sent: Recorder['sent'] = []
  return { sent, send: (data) => { sent.push(data); return true } }
}

describe('joinSentChunks', () => {
  it('passes a noise message (length prefix + ciphertext) on as one buffer', () => {
    const stream = joinSentChunks(recorder())
    const message = new Uint8ArrayList(Uint8Array.from([0, 3]), Uint8Array.from([7, 8, 9]))
    expect(stream.send(message)).toBe(true)
    expect(stream.sent).toHaveLength(1)
    expect(stream.sent[0]).toBeInstanceOf(Uint8Array)
    expect([...(stream.sent[0] as Uint8Array)]).toEqual([0, 3, 7, 8, 9])
  })

  it('leaves plain buffers and one-chunk lists uncopied', () => {
    const stream = joinSentChunks(recorder())
    const buf = Uint8Array.from([1, 2])
    stream.send(buf)
    const only = Uint8Array.from([5])
    stream.send(new Uint8ArrayList(only))
    expect(stream.sent[0]).toBe(buf)
    expect(stream.sent[1]).toBe(only)
  })

  it('passes lists over 256 KiB on as they are (no big copies)', () => {
    const stream = joinSentChunks(recorder())
    const big = new Uint8ArrayList(new Uint8Array(2), new Uint8Array(300 * 1024))
    stream.send(big)
    expect(stream.sent[0]).toBe(big)
  })

  it('returns what the wrapped send returns (backpressure)', () => {
    const stream = joinSentChunks<Recorder>({ sent: [], send: () => false })
    expect(stream.send(new Uint8ArrayList(new Uint8Array(1), new Uint8Array(1)))).toBe(false)
  })
})
