import { noise } from '@chainsafe/libp2p-noise'
import type { MessageStream } from '@libp2p/interface'

/** Messages up to this size are joined into one buffer (one copy) before the transport. */
const MAX_JOINED_BYTES = 256 * 1024

type NoiseInit = Parameters<typeof noise>[0]

/**
 * noise(), with each encrypted message handed to the transport as one buffer.
 *
 * Noise passes the transport every message as two chunks, its 2-byte length and the
 * ciphertext, and @libp2p/tcp writes chunk by chunk. With TCP_NODELAY each message then
 * leaves as two segments, and the receiver wakes up for the 2-byte one before the rest
 * arrives: two syscalls and an extra wake-up per message on each side, which on loopback
 * is a good part of a hop's cost (strace of a 3-server swarm: every run, result and yamux
 * window update went out as a 2-byte write and a body write).
 */
export function wholeMessageNoise (init?: NoiseInit): ReturnType<typeof noise> {
  const makeNoise = noise(init)
  return (components) => {
    const encrypter = makeNoise(components)
    const secureOutbound = encrypter.secureOutbound.bind(encrypter)
    const secureInbound = encrypter.secureInbound.bind(encrypter)
    encrypter.secureOutbound = async (connection, options) => await secureOutbound(joinSentChunks(connection), options)
    encrypter.secureInbound = async (connection, options) => await secureInbound(joinSentChunks(connection), options)
    return encrypter
  }
}

/** Makes `stream.send` pass a multi-chunk list (up to MAX_JOINED_BYTES) on as one buffer. */
export function joinSentChunks<S extends Pick<MessageStream, 'send'>> (stream: S): S {
  const send = stream.send.bind(stream)
  stream.send = (data) => {
    // a list's subarray() is its only chunk when it has one, else a joined copy
    if (data instanceof Uint8Array || data.byteLength > MAX_JOINED_BYTES) return send(data)
    return send(data.subarray())
  }
  return stream
}
