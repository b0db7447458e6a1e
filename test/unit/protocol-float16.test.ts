import { describe, expect, it } from 'vitest'
import { decodeFloat16, encodeFloat16, f16BitsToF32Bits, f32BitsToF16Bits, roundToFloat16 } from '../../protocol/float16.js'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)
function bitsOf (x: number): number { f32[0] = x; return u32[0]! }
function valueOf (bits: number): number { u32[0] = bits; return f32[0]! }
/** float16 bits -> number, by the textbook formula (independent of the code under test). */
function reference (h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 0) return s * m * 2 ** -24
  if (e === 31) return m === 0 ? s * Infinity : NaN
  return s * (1 + m / 1024) * 2 ** (e - 15)
}

describe('float16', () => {
  it('decodes every float16 value exactly', () => {
    const wrong: number[] = []
    for (let h = 0; h < 65536; h++) {
      const got = valueOf(f16BitsToF32Bits(h))
      const want = reference(h)
      if (Number.isNaN(want) ? !Number.isNaN(got) : !Object.is(got, want)) wrong.push(h)
    }
    expect(wrong).toEqual([])
    const table = decodeFloat16(new Uint16Array(65536).map((_, h) => h))
    expect(Array.from(new Uint32Array(table.buffer)).every((b, h) => b === f16BitsToF32Bits(h))).toBe(true)
  })

  it('round-trips every non-NaN float16 bit pattern', () => {
    const wrong: number[] = []
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue
      if (f32BitsToF16Bits(f16BitsToF32Bits(h)) !== h) wrong.push(h)
    }
    expect(wrong).toEqual([])
  })

  it('rounds midpoints to even and near-midpoints to nearest (scalar and array paths)', () => {
    // every pair of neighbours among finite float16 values, including subnormals
    const inputs: number[] = [] // float32 bits
    const expected: number[] = [] // float16 bits
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (reference(h) + reference(h + 1)) / 2 // exact in float32: needs 12 significant bits
      const even = (h & 1) === 0 ? h : h + 1
      inputs.push(bitsOf(mid), bitsOf(mid) - 1, bitsOf(mid) + 1, bitsOf(-mid), bitsOf(-mid) + 1)
      expected.push(even, h, h + 1, even | 0x8000, (h + 1) | 0x8000)
    }
    const scalar = inputs.map((x) => f32BitsToF16Bits(x))
    const array = Array.from(encodeFloat16(new Float32Array(new Uint32Array(inputs).buffer)))
    expect(scalar).toEqual(expected)
    expect(array).toEqual(expected)
  })

  it('array path matches the scalar path on random bit patterns', () => {
    const bits = new Uint32Array(1 << 18)
    for (let i = 0; i < bits.length; i++) bits[i] = (Math.random() * 2 ** 32) >>> 0
    const array = encodeFloat16(new Float32Array(bits.buffer))
    let mismatches = 0
    for (let i = 0; i < bits.length; i++) if (array[i] !== f32BitsToF16Bits(bits[i]!)) mismatches++
    expect(mismatches).toBe(0)
  })

  it('handles overflow, underflow and special values', () => {
    expect(f32BitsToF16Bits(bitsOf(65504))).toBe(0x7bff) // max finite
    expect(f32BitsToF16Bits(bitsOf(65519.99))).toBe(0x7bff)
    expect(f32BitsToF16Bits(bitsOf(65520))).toBe(0x7c00) // midpoint to "65536" rounds to even: inf
    expect(f32BitsToF16Bits(bitsOf(1e10))).toBe(0x7c00)
    expect(f32BitsToF16Bits(bitsOf(-1e10))).toBe(0xfc00)
    expect(f32BitsToF16Bits(bitsOf(Infinity))).toBe(0x7c00)
    expect(f32BitsToF16Bits(bitsOf(-Infinity))).toBe(0xfc00)
    expect(f32BitsToF16Bits(bitsOf(-0))).toBe(0x8000)
    expect(f32BitsToF16Bits(bitsOf(2 ** -25))).toBe(0) // half the smallest subnormal: tie to even (0)
    expect(f32BitsToF16Bits(bitsOf(2 ** -25) + 1)).toBe(1)
    expect(f32BitsToF16Bits(bitsOf(2 ** -26))).toBe(0)
    expect(f32BitsToF16Bits(bitsOf(-(2 ** -30)))).toBe(0x8000)
    expect(f32BitsToF16Bits(bitsOf(1e-45))).toBe(0) // float32 subnormal
    expect(f32BitsToF16Bits(bitsOf(2 ** -14 - 2 ** -25))).toBe(0x400) // largest subnormal rounds up into the normals
    const nan = f32BitsToF16Bits(0x7fc00000)
    expect(nan & 0x7c00).toBe(0x7c00)
    expect(nan & 0x3ff).not.toBe(0)
    expect(f32BitsToF16Bits(0x7f800001) & 0x3ff).not.toBe(0) // signalling NaN stays NaN
    expect(Number.isNaN(roundToFloat16(NaN))).toBe(true)
  })

  it('converts arrays both ways, also from an offset view', () => {
    const values = new Float32Array([0, 1, -2.5, 65504, 1e-7, -Infinity, 0.1, 3.14159])
    const buf = new Float32Array(values.length + 3)
    buf.set(values, 3)
    const view = buf.subarray(3)
    const bits = encodeFloat16(view)
    const back = decodeFloat16(bits)
    for (let i = 0; i < values.length; i++) expect(back[i]).toBe(roundToFloat16(values[i]!))
    expect(roundToFloat16(0.1)).toBeCloseTo(0.1, 3)
    expect(() => encodeFloat16(values, new Uint16Array(2))).toThrow(RangeError)
  })

  it('is fast enough to run on every token', () => {
    const n = 1 << 20
    const src = new Float32Array(n).map((_, i) => Math.sin(i) * 10)
    const bits = new Uint16Array(n)
    const out = new Float32Array(n)
    encodeFloat16(src, bits); decodeFloat16(bits, out) // warm-up
    const t0 = performance.now()
    encodeFloat16(src, bits)
    const t1 = performance.now()
    decodeFloat16(bits, out)
    const t2 = performance.now()
    // generous bounds (CI noise); typical is a few ms per Mi elements
    expect(t1 - t0).toBeLessThan(200)
    expect(t2 - t1).toBeLessThan(200)
  })
})
