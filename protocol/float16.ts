/**
 * IEEE 754 binary16 <-> binary32 conversion on raw bits, for activations on
 * the wire. float32 -> float16 rounds to nearest, ties to even; subnormals,
 * infinities, signed zeros and NaN (quiet, top payload bits kept) are exact.
 * Works on bit patterns through integer views so NaN payloads never pass
 * through a JS number. The protocol layer keeps its own converter so that it
 * does not depend on the model layer.
 */

/**
 * Converts float32 bits (as a uint32) to float16 bits (as a uint16).
 * Contract: round to nearest even; |x| >= 65520 -> inf; |x| < 2^-25 -> 0.
 */
export function f32BitsToF16Bits (x: number): number {
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  const mant = x & 0x7fffff
  if (exp === 0xff) {
    // inf stays inf; NaN keeps its top 9 payload bits and is forced quiet (non-zero)
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13)
  }
  const e = exp - 112 // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00 // overflow -> inf
  if (e <= 0) {
    // float16 subnormal (or zero): value = m * 2^-24, m = M >> (14 - e) with M = 1.mant as an integer
    if (e < -10) return sign // below half the smallest subnormal -> signed zero
    const full = mant | 0x800000
    const shift = 14 - e // 14..24
    const m = full >>> shift
    const rem = full & ((1 << shift) - 1)
    const half = 1 << (shift - 1)
    // a carry out of the subnormal range lands on the smallest normal, which is correct
    return sign | (rem > half || (rem === half && (m & 1) === 1) ? m + 1 : m)
  }
  const h = (e << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  // a carry from the mantissa into the exponent is correct, up to inf
  return sign | (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1) ? h + 1 : h)
}

/** Converts float16 bits (as a uint16) to float32 bits (as a uint32); exact. */
export function f16BitsToF32Bits (h: number): number {
  const sign = (h & 0x8000) << 16
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0 // inf / NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0
  if (mant === 0) return sign >>> 0 // signed zero
  // subnormal: normalise the mantissa
  let e = 113
  let m = mant
  while ((m & 0x400) === 0) { m <<= 1; e-- }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0
}

let table: Uint32Array | undefined // (65536,) float16 bits -> float32 bits

function f16Table (): Uint32Array {
  if (table === undefined) {
    table = new Uint32Array(65536)
    for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32Bits(h)
  }
  return table
}

/**
 * Encodes float32 values as float16 bits.
 * src (n,) float32 -> dst (n,) uint16; allocates dst when not given.
 */
export function encodeFloat16 (src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (dst.length !== src.length) {
    throw new RangeError(`Cannot encode float16 into ${dst.length} elements: source has ${src.length}`)
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length) // same memory, raw bits
  const n = bits.length
  for (let i = 0; i < n; i++) {
    const x = bits[i]!
    const e = ((x >>> 23) & 0xff) - 112 // float16 exponent
    if (e > 0 && e < 31) {
      // fast path, normal result: adding 0xfff + lsb rounds to nearest even; a carry rolls into the exponent (up to inf)
      const m = x & 0x7fffff
      dst[i] = ((x >>> 16) & 0x8000) | ((((e << 23) | m) + 0xfff + ((m >>> 13) & 1)) >>> 13)
    } else {
      dst[i] = f32BitsToF16Bits(x)
    }
  }
  return dst
}

/**
 * Decodes float16 bits to float32 values (exact, via a 256 KiB lookup table).
 * src (n,) uint16 -> dst (n,) float32; allocates dst when not given.
 */
export function decodeFloat16 (src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  if (dst.length !== src.length) {
    throw new RangeError(`Cannot decode float16 into ${dst.length} elements: source has ${src.length}`)
  }
  const lut = f16Table()
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length) // write raw bits
  const n = src.length
  for (let i = 0; i < n; i++) out[i] = lut[src[i]!]!
  return dst
}

/** Rounds a number to the nearest float16 value and returns it as a number. */
export function roundToFloat16 (value: number): number {
  scratchF32[0] = value
  scratchU32[0] = f16BitsToF32Bits(f32BitsToF16Bits(scratchU32[0]!))
  return scratchF32[0]!
}

const scratchF32 = new Float32Array(1)
const scratchU32 = new Uint32Array(scratchF32.buffer)
