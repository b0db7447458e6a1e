/**
 * Length-prefixed msgpack frames: unsigned LEB128 varint of the body length,
 * then the msgpackr body. Uint8Array fields travel as msgpack bin and come
 * back as Uint8Array views of the frame.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr'
import { BadMessageError, TooLargeError } from './errors.js'
import { DEFAULT_LIMITS, type Limits } from './limits.js'

/** Longest accepted varint prefix in bytes (7 bits each; 8 bytes cover 2^56). */
const MAX_VARINT_BYTES = 8
/** Bytes reserved ahead of the packed body for the varint. */
const HEADER_SPACE = 10
/** Frames carrying more binary than this get a dedicated pack buffer of the right size. */
const BIG_FRAME_BYTES = 64 * 1024

// Standard msgpack out (no records); undefined fields are skipped (skipValues
// is supported by msgpackr 2 but missing from its typings).
const packr = new Packr({ useRecords: false, skipValues: [undefined] } as ConstructorParameters<typeof Packr>[0])
// Plain objects back; no records sharing between frames, no structured-clone references.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false })

/** Bytes of the varint encoding of n. */
export function varintLength (n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 128); len++ }
  return len
}

/** Writes n as an unsigned LEB128 varint into out at offset; returns bytes written. */
export function writeVarint (n: number, out: Uint8Array, offset: number): number {
  let i = offset
  while (n >= 0x80) {
    out[i++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[i++] = n
  return i - offset
}

/** Sum of Uint8Array bytes inside a message (a few levels deep): sizes the pack buffer. */
function binaryBytes (value: unknown, depth: number): number {
  if (value instanceof Uint8Array) return value.byteLength
  if (depth === 0 || typeof value !== 'object' || value === null) return 0
  let sum = 0
  for (const v of Array.isArray(value) ? value : Object.values(value)) sum += binaryBytes(v, depth - 1)
  return sum
}

/**
 * Encodes one message as a frame: varint(body length) + msgpack body.
 * Binary fields are copied once. The result may be a view of a larger
 * buffer. Throws TooLargeError when the body exceeds maxFrameBytes.
 */
export function encodeFrame (message: unknown, limits: Pick<Limits, 'maxFrameBytes'> = DEFAULT_LIMITS): Uint8Array {
  const big = binaryBytes(message, 6) > BIG_FRAME_BYTES
  // a big frame gets one right-sized buffer instead of msgpackr's doubling growth
  if (big) packr.useBuffer(Buffer.allocUnsafeSlow(binaryBytes(message, 6) + HEADER_SPACE + 16 * 1024))
  let packed: Uint8Array // [HEADER_SPACE reserved | body]
  try {
    packed = packr.pack(message, RESERVE_START_SPACE | HEADER_SPACE)
  } finally {
    // later small frames must not be appended to (and pin) the big buffer
    if (big) packr.useBuffer(Buffer.allocUnsafeSlow(BIG_FRAME_BYTES))
  }
  const bodyLength = packed.byteLength - HEADER_SPACE
  if (bodyLength > limits.maxFrameBytes) {
    throw new TooLargeError(`Cannot send frame of ${bodyLength} bytes: limit is ${limits.maxFrameBytes}`)
  }
  const headerLength = varintLength(bodyLength)
  const offset = HEADER_SPACE - headerLength
  writeVarint(bodyLength, packed, offset)
  return packed.subarray(offset)
}

/** Decodes one msgpack body; BAD_MESSAGE unless it is exactly one msgpack map. */
export function decodeFrameBody (body: Uint8Array): Record<string, unknown> {
  let value: unknown
  try {
    value = unpackr.unpack(body)
  } catch (err) {
    throw new BadMessageError(`Cannot decode frame of ${body.byteLength} bytes: ${(err as Error).message}`, { cause: err })
  }
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new BadMessageError(`Invalid frame: expected a msgpack map, got ${Array.isArray(value) ? 'an array' : typeof value}`)
  }
  return value as Record<string, unknown>
}

/** A chunk as delivered by a stream: bytes, or a list of byte chunks (Uint8ArrayList). */
export type Chunk = Uint8Array | { subarray: () => Uint8Array } | Iterable<Uint8Array>

function* chunkParts (chunk: Chunk): Iterable<Uint8Array> {
  if (chunk instanceof Uint8Array) yield chunk
  else if (Symbol.iterator in chunk) yield * chunk
  else yield chunk.subarray()
}

/**
 * Incremental frame decoder. push() takes chunks in arrival order and returns
 * the messages (msgpack maps, still unvalidated) they complete. A frame's declared length is checked against
 * maxFrameBytes before its body is buffered (TOO_LARGE); a bad varint, an
 * empty frame or undecodable msgpack is BAD_MESSAGE. After an error the
 * decoder is failed and rethrows it.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number
  #chunks: Uint8Array[] = [] // queued bytes; the first one is read from #head
  #head = 0
  #buffered = 0 // unread bytes in #chunks
  #bodyLength = -1 // length of the frame being assembled, -1 while reading a header
  #error: Error | undefined

  constructor (limits: Pick<Limits, 'maxFrameBytes'> = DEFAULT_LIMITS) {
    this.#maxFrameBytes = limits.maxFrameBytes
  }

  /** Unread bytes held (at most one partial frame plus what arrived with it). */
  get bufferedBytes (): number {
    return this.#buffered
  }

  /** Appends a chunk; returns the messages it completes, in order. */
  push (chunk: Chunk): unknown[] {
    if (this.#error !== undefined) throw this.#error
    for (const part of chunkParts(chunk)) {
      if (part.byteLength === 0) continue
      this.#chunks.push(part)
      this.#buffered += part.byteLength
    }
    const out: unknown[] = []
    try {
      for (;;) {
        if (this.#bodyLength < 0 && !this.#readHeader()) break
        if (this.#buffered < this.#bodyLength) break
        const body = this.#take(this.#bodyLength)
        this.#bodyLength = -1
        out.push(decodeFrameBody(body))
      }
    } catch (err) {
      this.#error = err as Error
      this.#chunks = []
      this.#buffered = 0
      throw err
    }
    return out
  }

  /** Call at end of input: throws BAD_MESSAGE if a partial frame is left. */
  end (): void {
    if (this.#error !== undefined) throw this.#error
    if (this.#buffered > 0 || this.#bodyLength >= 0) {
      this.#error = new BadMessageError(`Stream ended inside a frame: ${this.#buffered} bytes of a partial frame`)
      throw this.#error
    }
  }

  /** Parses the varint header if complete; sets #bodyLength and consumes it. */
  #readHeader (): boolean {
    let value = 0
    let scale = 1
    let i = 0
    for (let c = 0, pos = this.#head; c < this.#chunks.length; c++, pos = 0) {
      const chunk = this.#chunks[c]!
      for (; pos < chunk.byteLength; pos++) {
        const byte = chunk[pos]!
        value += (byte & 0x7f) * scale
        scale *= 128
        i++
        if ((byte & 0x80) === 0) {
          if (value > this.#maxFrameBytes) {
            throw new TooLargeError(`Cannot accept frame of ${value} bytes: limit is ${this.#maxFrameBytes}`)
          }
          if (value === 0) throw new BadMessageError('Invalid frame: length is 0')
          this.#take(i) // drop the header
          this.#bodyLength = value
          return true
        }
        if (i >= MAX_VARINT_BYTES) throw new BadMessageError(`Invalid frame length: varint longer than ${MAX_VARINT_BYTES} bytes`)
      }
    }
    return false
  }

  /** Removes n buffered bytes; a view when they lie in one chunk, else a copy. */
  #take (n: number): Uint8Array {
    const first = this.#chunks[0]!
    this.#buffered -= n
    if (first.byteLength - this.#head >= n) {
      const view = first.subarray(this.#head, this.#head + n)
      this.#head += n
      if (this.#head === first.byteLength) { this.#chunks.shift(); this.#head = 0 }
      return view
    }
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const chunk = this.#chunks[0]!
      const count = Math.min(chunk.byteLength - this.#head, n - filled)
      out.set(chunk.subarray(this.#head, this.#head + count), filled)
      filled += count
      this.#head += count
      if (this.#head === chunk.byteLength) { this.#chunks.shift(); this.#head = 0 }
    }
    return out
  }
}
