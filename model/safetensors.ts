import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { CheckpointError } from './errors.js'
import { DTYPE_BYTES, bf16ToF32, f16ToF32, isFloatDtype, type FloatDtype } from './dtype.js'

/**
 * safetensors layout: u64 little-endian N, then N bytes of JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`,
 * then the data; offsets are relative to the first byte after the header.
 */

/** Where one tensor lives: enough to read it by offset without touching anything else. */
export interface TensorEntry {
  readonly name: string
  /** Path of the .safetensors file that holds it. */
  readonly file: string
  readonly dtype: FloatDtype
  readonly shape: readonly number[]
  /** Absolute byte offset of the first element in `file`. */
  readonly offset: number
  /** Stored bytes: product(shape) * DTYPE_BYTES[dtype]. */
  readonly byteLength: number
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  readonly file: string
  readonly fileSize: number
  /** Tensors in header order. */
  readonly tensors: ReadonlyMap<string, TensorEntry>
}

/** Headers larger than this are refused (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000

/** Bytes read per `readSync` call; also the granularity of progress reports. */
const CHUNK_BYTES = 16 << 20

/** Reads and validates the header of `file` (reads 8 + N bytes, never the data). */
export function readSafetensorsHeader (file: string): SafetensorsHeader {
  const fd = openFile(file)
  try {
    const fileSize = fstatSync(fd).size
    if (fileSize < 8) throw new CheckpointError(`${file}: file is truncated (file has ${fileSize} bytes, a header length needs 8)`)
    const lenBytes = Buffer.alloc(8)
    readFully(fd, file, lenBytes, 0)
    const headerLen = lenBytes.readBigUInt64LE(0)
    if (headerLen > BigInt(fileSize - 8)) {
      throw new CheckpointError(`${file}: header is truncated (file has ${fileSize} bytes, header claims ${headerLen})`)
    }
    if (headerLen > BigInt(MAX_HEADER_BYTES)) {
      throw new CheckpointError(`${file}: header length ${headerLen} is over the limit of ${MAX_HEADER_BYTES} bytes`)
    }
    const json = Buffer.alloc(Number(headerLen))
    readFully(fd, file, json, 8)
    let raw: unknown
    try {
      raw = JSON.parse(json.toString('utf8'))
    } catch (err) {
      throw new CheckpointError(`${file}: header is not valid JSON`, { cause: err })
    }
    return { file, fileSize, tensors: parseSafetensorsHeader(raw, file, 8 + json.byteLength, fileSize) }
  } finally {
    closeSync(fd)
  }
}

/**
 * Validates a parsed header object. `dataStart` is 8 + header length; `fileSize` bounds every
 * tensor. Each refusal is a CheckpointError naming `file`, the tensor and what is wrong.
 */
export function parseSafetensorsHeader (raw: unknown, file: string, dataStart: number, fileSize: number): Map<string, TensorEntry> {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CheckpointError(`${file}: header must be a JSON object`)
  }
  const tensors = new Map<string, TensorEntry>()
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') continue
    const bad = (why: string): never => { throw new CheckpointError(`${file}: tensor "${name}" ${why}`) }
    if (value == null || typeof value !== 'object') bad('has no entry object')
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>
    if (typeof dtype !== 'string') bad('has no dtype')
    if (!isFloatDtype(dtype)) bad(`has dtype ${String(dtype)}, supported: F32, F16, BF16`)
    const dt = dtype as FloatDtype
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      bad(`has invalid shape ${JSON.stringify(shape)}: must be a list of non-negative integers`)
    }
    const dims = shape as number[]
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0]! > offsets[1]!) {
      bad(`has invalid data_offsets ${JSON.stringify(offsets)}: must be [begin, end] with 0 <= begin <= end`)
    }
    const [begin, end] = offsets as [number, number]
    const need = dims.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dt]
    if (end - begin !== need) {
      bad(`has data_offsets [${begin}, ${end}] (${end - begin} bytes) but shape [${dims.join(', ')}] of ${dt} needs ${need} bytes`)
    }
    if (dataStart + end > fileSize) {
      bad(`ends at byte ${dataStart + end}, past the end of the file (${fileSize} bytes): file is truncated`)
    }
    tensors.set(name, { name, file, dtype: dt, shape: dims, offset: dataStart + begin, byteLength: need })
  }
  return tensors
}

/** Called after each chunk read with the bytes of this tensor read so far. */
export type BytesRead = (bytes: number) => void

/**
 * Reads one tensor by offset and widens it to float32 (product(shape)). Reads in chunks of
 * 16 MiB, so an F16/BF16 tensor needs only its float32 output plus one chunk.
 */
export function readTensorF32 (entry: TensorEntry, onBytes?: BytesRead): Float32Array {
  const n = entry.byteLength / DTYPE_BYTES[entry.dtype]
  const out = new Float32Array(n)
  if (entry.dtype === 'F32') {
    // read straight into the output, no staging copy
    forEachChunk(entry, new Uint8Array(out.buffer), (chunk, at) => { onBytes?.(at + chunk.byteLength) })
    return out
  }
  const widen = entry.dtype === 'F16' ? f16ToF32 : bf16ToF32
  forEachChunk(entry, undefined, (chunk, at) => {
    const src = new Uint16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength / 2)
    widen(src, out.subarray(at / 2, at / 2 + src.length))
    onBytes?.(at + chunk.byteLength)
  })
  return out
}

/**
 * Streams a tensor's stored bytes: `fn(chunk, at)` gets each chunk (valid only during the call)
 * and its offset within the tensor. Used for hashing without holding the tensor.
 */
export function readTensorChunks (entry: TensorEntry, fn: (chunk: Uint8Array, at: number) => void): void {
  forEachChunk(entry, undefined, fn)
}

/** Reads `entry` in chunks into `target` (its byteLength bytes) or, without one, a reused scratch chunk. */
function forEachChunk (entry: TensorEntry, target: Uint8Array | undefined, fn: (chunk: Uint8Array, at: number) => void): void {
  const fd = openFile(entry.file)
  try {
    const scratch = target === undefined ? new Uint8Array(Math.min(CHUNK_BYTES, entry.byteLength)) : undefined // offset 0: aligned
    for (let at = 0; at < entry.byteLength; at += CHUNK_BYTES) {
      const len = Math.min(CHUNK_BYTES, entry.byteLength - at)
      const chunk = target === undefined ? scratch!.subarray(0, len) : target.subarray(at, at + len)
      readFully(fd, entry.file, chunk, entry.offset + at)
      fn(chunk, at)
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * Lays out a header for tensors written in the given order, back to back. Returns the
 * bytes to write first (u64 length + JSON padded with spaces to a multiple of 8) and the
 * stored size of each tensor. Used by writers (scripts, tests).
 */
export function encodeSafetensorsHeader (
  tensors: ReadonlyArray<{ name: string, dtype: FloatDtype, shape: readonly number[] }>,
  metadata: Record<string, string> = { format: 'pt' }
): { header: Uint8Array, sizes: number[] } {
  const json: Record<string, unknown> = { __metadata__: metadata }
  const sizes: number[] = []
  let at = 0
  for (const t of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + size] }
    sizes.push(size)
    at += size
  }
  let text = JSON.stringify(json)
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8)
  const body = Buffer.from(text, 'utf8')
  const header = Buffer.alloc(8 + body.byteLength)
  header.writeBigUInt64LE(BigInt(body.byteLength), 0)
  body.copy(header, 8)
  return { header, sizes }
}

function isCount (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function openFile (file: string): number {
  try {
    return openSync(file, 'r')
  } catch (err: any) {
    throw new CheckpointError(`${file}: cannot open: ${err.code === 'ENOENT' ? 'file not found' : err.message}`, { cause: err })
  }
}

/** Fills `into` from `position`; a short read means the file shrank under us. */
function readFully (fd: number, file: string, into: Uint8Array, position: number): void {
  let done = 0
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done)
    if (n === 0) {
      throw new CheckpointError(`${file}: file is truncated (needed bytes up to ${position + into.byteLength}, file ends at ${position + done})`)
    }
    done += n
  }
}
