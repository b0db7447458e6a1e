import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { joinSentChunks, LENGTH_NOT_YET_KNOWN, readNoiseLength, wholeMessageNoise } from '../../net/whole-message-noise.js'

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

describe('readNoiseLength', () => {
  it('reads the 2-byte big-endian length from a buffer or a list split anywhere', () => {
    expect(readNoiseLength(Uint8Array.from([1, 2, 9]))).toBe(258)
    expect(readNoiseLength(new Uint8ArrayList(Uint8Array.from([0xff]), Uint8Array.from([0xfe, 7])))).toBe(65534)
  })

  it('says "not yet" with a length no noise message has, instead of throwing, while fewer than 2 bytes are in', () => {
    expect(readNoiseLength(new Uint8ArrayList())).toBe(LENGTH_NOT_YET_KNOWN)
    expect(readNoiseLength(Uint8Array.from([4]))).toBe(LENGTH_NOT_YET_KNOWN)
    expect(LENGTH_NOT_YET_KNOWN).toBeGreaterThan(65535)
  })
})

describe('wholeMessageNoise', () => {
  const encrypter = async (): Promise<ReturnType<ReturnType<typeof wholeMessageNoise>>> => {
    const privateKey = await generateKeyPair('Ed25519')
    const upgrader = { getStreamMuxers: () => new Map() } as unknown as Parameters<ReturnType<typeof wholeMessageNoise>>[0]['upgrader']
    return wholeMessageNoise()({ privateKey, peerId: peerIdFromPrivateKey(privateKey), logger: defaultLogger(), upgrader })
  }

  it('secures a connection whose decoder reads lengths without exceptions, and messages of every size cross it', async () => {
    const [a, b] = await Promise.all([encrypter(), encrypter()])
    const [outbound, inbound] = multiaddrConnectionPair()
    const [client, server] = await Promise.all([
      a.secureOutbound(outbound, { skipStreamMuxerNegotiation: true }),
      b.secureInbound(inbound, { skipStreamMuxerNegotiation: true })
    ])
    for (const side of [client, server]) {
      expect((side.connection as unknown as { decoder: { lengthDecoder: unknown } }).decoder.lengthDecoder).toBe(readNoiseLength)
    }
    // one message per size, including one that noise splits into several
    const sizes = [1, 2, 100, 65_519, 65_520, 200_000]
    const received: number[] = []
    const done = new Promise<void>(resolve => {
      let total = 0
      server.connection.addEventListener('message', (evt) => {
        received.push(evt.data.byteLength)
        total += evt.data.byteLength
        if (total === sizes.reduce((x, y) => x + y, 0)) resolve()
      })
    })
    for (const n of sizes) client.connection.send(new Uint8Array(n).fill(n % 251))
    await done
    expect(received.reduce((x, y) => x + y, 0)).toBe(sizes.reduce((x, y) => x + y, 0))
    client.connection.abort(new Error("test over")); server.connection.abort(new Error("test over"))
  })
})
