import { noise } from '@chainsafe/libp2p-noise'
import type { MessageStream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Messages up to this size are joined into one buffer (one copy) before the transport. */
const MAX_JOINED_BYTES = 256 * 1024

type NoiseInit = Parameters<typeof noise>[0]

/**
 * A length no noise message has (they are at most 65535 bytes): what readNoiseLength says
 * while fewer than 2 bytes have arrived, so that the decoder waits for more.
 */
export const LENGTH_NOT_YET_KNOWN = 0x10000

/**
 * noise(), with each encrypted message handed to the transport as one buffer, and incoming
 * message lengths read without exceptions.
 *
 * Noise passes the transport every message as two chunks, its 2-byte length and the
 * ciphertext, and @libp2p/tcp writes chunk by chunk. With TCP_NODELAY each message then
 * leaves as two segments, and the receiver wakes up for the 2-byte one before the rest
 * arrives: two syscalls and an extra wake-up per message on each side, which on loopback
 * is a good part of a hop's cost (strace of a 3-server swarm: every run, result and yamux
 * window update went out as a 2-byte write and a body write).
 *
 * On the way in, noise's length-prefixed decoder reads the next length after every message
 * and learns that no bytes are left from a RangeError, thrown and caught for each chunk
 * that arrives; capturing its stack trace was 4.6% of a profile of 1-token round trips.
 */
export function wholeMessageNoise (init?: NoiseInit): ReturnType<typeof noise> {
  const makeNoise = noise(init)
  return (components) => {
    const encrypter = makeNoise(components)
    const secureOutbound = encrypter.secureOutbound.bind(encrypter)
    const secureInbound = encrypter.secureInbound.bind(encrypter)
    encrypter.secureOutbound = async (connection, options) => withQuietLengths(await secureOutbound(joinSentChunks(connection), options))
    encrypter.secureInbound = async (connection, options) => withQuietLengths(await secureInbound(joinSentChunks(connection), options))
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

/** Noise's 2-byte big-endian message length, or LENGTH_NOT_YET_KNOWN while fewer than 2 bytes are buffered. */
export function readNoiseLength (data: Uint8Array | Uint8ArrayList): number {
  if (data.byteLength < 2) return LENGTH_NOT_YET_KNOWN
  if (data instanceof Uint8Array) return ((data[0] as number) << 8) | (data[1] as number)
  return (data.get(0) << 8) | data.get(1)
}

/**
 * Swaps the length reader of the secured connection's decoder (a field of noise's
 * EncryptedMessageStream, not its API: left alone if a version names it otherwise).
 */
function withQuietLengths<T extends { connection: unknown }> (secured: T): T {
  const decoder = (secured.connection as { decoder?: { lengthDecoder?: unknown } }).decoder
  if (typeof decoder?.lengthDecoder === 'function') decoder.lengthDecoder = readNoiseLength
  return secured
}
