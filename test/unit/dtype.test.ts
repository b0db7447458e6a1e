import { describe, expect, it } from 'vitest'
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, fromFloat32, toFloat32 } from '../../model/dtype.js'

const ALL_PATTERNS = Uint16Array.from({ length: 65536 }, (_, i) => i)
const f32 = (bits: number): number => new Float32Array(Uint32Array.of(bits).buffer)[0]!
const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length)
const toHalf = (x: number): number => f32ToF16(Float32Array.of(x))[0]!
const toBf = (x: number): number => f32ToBf16(Float32Array.of(x))[0]!
const half = (h: number): number => f16ToF32(Uint16Array.of(h))[0]!

describe('f16', () => {
  it('round-trips every one of the 65536 bit patterns exactly (NaN payloads included)', () => {
    const wide = f16ToF32(ALL_PATTERNS)
    expect(f32ToF16(wide)).toEqual(ALL_PATTERNS)
  })

  it('decodes normals, subnormals, signed zero, infinities and NaN', () => {
    expect(half(0x3c00)).toBe(1)
    expect(half(0xc000)).toBe(-2)
    expect(half(0x7bff)).toBe(65504)
    expect(half(0x0400)).toBe(2 ** -14)
    expect(half(0x0001)).toBe(2 ** -24)
    expect(half(0x03ff)).toBe(1023 * 2 ** -24)
    expect(Object.is(half(0x8000), -0)).toBe(true)
    expect(half(0x7c00)).toBe(Infinity)
    expect(half(0xfc00)).toBe(-Infinity)
    expect(half(0x7e00)).toBeNaN()
  })

  it('rounds to nearest, ties to even, at every boundary', () => {
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00) // tie -> even (1)
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02) // tie -> even (mantissa 2)
    expect(toHalf(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01) // just above the tie
    expect(toHalf(65519)).toBe(0x7bff)
    expect(toHalf(65520)).toBe(0x7c00) // tie between 65504 and 65536 -> even -> inf
    expect(toHalf(1e9)).toBe(0x7c00)
    expect(toHalf(-1e9)).toBe(0xfc00)
    expect(toHalf(2 ** -25)).toBe(0) // tie between 0 and the smallest subnormal -> 0
    expect(toHalf(1.5 * 2 ** -25)).toBe(0x0001)
    expect(toHalf(3 * 2 ** -25)).toBe(0x0002) // tie between 1 and 2 subnormal units -> 2
    expect(toHalf(1023.5 * 2 ** -24)).toBe(0x0400) // carries into the smallest normal
    expect(toHalf(f32(0x00000001))).toBe(0) // f32 subnormal
    expect(toHalf(-0)).toBe(0x8000)
    expect(toHalf(NaN) & 0x7c00).toBe(0x7c00)
    expect(toHalf(f32(0x7f800001)) & 0x3ff).not.toBe(0) // low-payload NaN stays NaN
  })

  it('always picks the nearest half, ties to even, over random float32 values', () => {
    let state = 12345
    const next = (): number => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return state >>> 0 } // xorshift32
    const bits = new Uint32Array(10000)
    for (let i = 0; i < bits.length; i++) {
      const exp = 100 + (next() % 44) // 2^-27 .. 2^16: subnormals to overflow
      bits[i] = ((next() & 0x80000000) | (exp << 23) | (next() & 0x7fffff)) >>> 0
    }
    const xs = new Float32Array(bits.buffer)
    const hs = f32ToF16(xs)
    for (let i = 0; i < xs.length; i++) {
      const x = Math.abs(xs[i]!)
      const h = hs[i]! & 0x7fff
      if (x >= 65520) { expect(h).toBe(0x7c00); continue }
      const err = Math.abs(half(h) - x)
      if (h > 0) expect(err).toBeLessThanOrEqual(Math.abs(half(h - 1) - x))
      expect(err).toBeLessThanOrEqual(Math.abs(half(h + 1) - x))
      if (h > 0 && err === Math.abs(half(h - 1) - x)) expect(h & 1).toBe(0)
      if (err === Math.abs(half(h + 1) - x)) expect(h & 1).toBe(0)
    }
  })
})

describe('bf16', () => {
  it('round-trips every one of the 65536 bit patterns exactly', () => {
    const wide = bf16ToF32(ALL_PATTERNS)
    expect(bitsOf(wide)[0x3f80]).toBe(0x3f800000)
    expect(f32ToBf16(wide)).toEqual(ALL_PATTERNS)
  })

  it('rounds to nearest, ties to even; overflow goes to inf; NaN stays NaN', () => {
    expect(toBf(1)).toBe(0x3f80)
    expect(toBf(1 + 2 ** -8)).toBe(0x3f80) // tie -> even
    expect(toBf(1 + 3 * 2 ** -8)).toBe(0x3f82) // tie -> even
    expect(toBf(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81)
    expect(toBf(f32(0x7f7fffff))).toBe(0x7f80) // float32 max rounds to inf
    expect(toBf(-Infinity)).toBe(0xff80)
    expect(toBf(f32(0x00000001))).toBe(0) // f32 subnormal -> 0
    expect(toBf(f32(0x00018000))).toBe(0x0002) // bf16 subnormal, tie -> even
    const nan = toBf(f32(0x7f800001)) // payload only in the dropped bits
    expect(nan & 0x7f80).toBe(0x7f80)
    expect(nan & 0x7f).not.toBe(0)
  })
})

describe('byte codecs', () => {
  it('toFloat32/fromFloat32 round-trip each dtype, also from unaligned bytes', () => {
    const values = Float32Array.of(0, -1.5, 3.140625, 65504, -(2 ** -24))
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const bytes = fromFloat32(dtype, values)
      const unaligned = new Uint8Array(bytes.byteLength + 1).subarray(1)
      unaligned.set(bytes)
      const expected = dtype === 'BF16' ? bf16ToF32(f32ToBf16(values)) : values
      expect(toFloat32(dtype, bytes)).toEqual(expected)
      expect(toFloat32(dtype, unaligned)).toEqual(expected)
    }
    expect(() => toFloat32('F16', new Uint8Array(3))).toThrow(RangeError)
  })
})
