/**
 * Float formats that checkpoints store and activations travel in, and exact conversions
 * between them and float32. All loops work on integer views (Uint16Array/Uint32Array), so
 * NaN payloads, infinities, signed zeros and subnormals survive bit for bit. Byte order is
 * the host's, which is little-endian on every platform Node ships for (as in safetensors).
 */

/** Element types Petal reads from safetensors (names as safetensors writes them). */
export type FloatDtype = 'F32' | 'F16' | 'BF16'

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<FloatDtype, number>> = { F32: 4, F16: 2, BF16: 2 }

/** True when `s` names a dtype that Petal can read. */
export function isFloatDtype (s: unknown): s is FloatDtype {
  return s === 'F32' || s === 'F16' || s === 'BF16'
}

let f16Table: Uint32Array | undefined

/** f16 bits -> f32 bits, for all 65536 patterns (256 KiB, built on first use). */
function f16ToF32Table (): Uint32Array {
  if (f16Table !== undefined) return f16Table
  const table = new Uint32Array(65536)
  const scratch = new Float32Array(1)
  const scratchBits = new Uint32Array(scratch.buffer)
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16
    const exp = (h >>> 10) & 0x1f
    const mant = h & 0x3ff
    if (exp === 0x1f) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0 // inf, or NaN with its payload
    } else if (exp === 0) {
      scratch[0] = mant * 2 ** -24 // zero or subnormal: exact in f32
      table[h] = (sign | scratchBits[0]!) >>> 0
    } else {
      table[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0
    }
  }
  f16Table = table
  return table
}

/** IEEE half bits (n) -> float32 (n), exactly. Writes into `out` when given. */
export function f16ToF32 (src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length)
  const table = f16ToF32Table()
  const dst = new Uint32Array(out.buffer, out.byteOffset, out.length)
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!
  return out
}

/** bfloat16 bits (n) -> float32 (n), exactly: the bits become the f32's top half. */
export function bf16ToF32 (src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length)
  const dst = new Uint32Array(out.buffer, out.byteOffset, out.length)
  for (let i = 0; i < src.length; i++) dst[i] = src[i]! << 16
  return out
}

/** float32 bits -> IEEE half bits, round to nearest even; overflow -> inf; NaN stays NaN. */
function f32BitsToF16 (x: number): number {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  const mant = x & 0x7fffff
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00
    const payload = mant >>> 13
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload)
  }
  const e = exp - 112 // exponent rebiased for half (bias 15)
  if (e >= 31) return sign | 0x7c00
  if (e >= 1) {
    // normal: drop 13 mantissa bits; a carry may roll into the exponent (or to inf), as it should
    let h = (e << 10) | (mant >>> 13)
    const rest = mant & 0x1fff
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++
    return sign | h
  }
  // subnormal half: value = m * 2^-24, m = (1.mant) >> (14 - e)
  const shift = 14 - e
  if (shift > 24) return sign // below half of the smallest subnormal
  const full = mant | 0x800000
  let m = full >>> shift
  const rest = full & ((1 << shift) - 1)
  const half = 1 << (shift - 1)
  if (rest > half || (rest === half && (m & 1) === 1)) m++
  return sign | m
}

/** float32 (n) -> IEEE half bits (n), round to nearest even. Writes into `out` when given. */
export function f32ToF16 (src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length)
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!)
  return out
}

/** float32 (n) -> bfloat16 bits (n), round to nearest even; NaN stays NaN. */
export function f32ToBf16 (src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length)
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length)
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!
    if ((x & 0x7fffffff) > 0x7f800000) {
      const hi = x >>> 16
      out[i] = (hi & 0x7f) === 0 ? hi | 0x40 : hi // keep it a NaN when the payload was all low bits
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16
    }
  }
  return out
}

/** Raw little-endian bytes of `dtype` (n elements) -> float32 (n). Copies unaligned input. */
export function toFloat32 (dtype: FloatDtype, bytes: Uint8Array, out?: Float32Array): Float32Array {
  const size = DTYPE_BYTES[dtype]
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`Cannot decode ${dtype} from ${bytes.byteLength} bytes: not a multiple of ${size}`)
  }
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice()
  const n = aligned.byteLength / size
  if (dtype === 'F32') {
    const src = new Float32Array(aligned.buffer, aligned.byteOffset, n)
    if (out === undefined) return aligned === bytes ? src.slice() : src
    checkLengths(n, out.length)
    new Uint32Array(out.buffer, out.byteOffset, n).set(new Uint32Array(src.buffer, src.byteOffset, n))
    return out
  }
  const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n)
  return dtype === 'F16' ? f16ToF32(src, out) : bf16ToF32(src, out)
}

/** float32 (n) -> raw little-endian bytes of `dtype` (n * DTYPE_BYTES[dtype]), a fresh copy. */
export function fromFloat32 (dtype: FloatDtype, values: Float32Array): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength))
  const half = dtype === 'F16' ? f32ToF16(values) : f32ToBf16(values)
  return new Uint8Array(half.buffer, half.byteOffset, half.byteLength)
}

function checkLengths (src: number, out: number): void {
  if (src !== out) throw new RangeError(`Cannot convert ${src} elements into an output of ${out}`)
}
