import { describe, expect, it } from 'vitest'
import { BadMessageError, BadShapeError, TooLargeError } from '../../protocol/errors.js'
import { roundToFloat16 } from '../../protocol/float16.js'
import { decodeTensor, encodeTensor, parseWireTensor, type WireTensor } from '../../protocol/tensor-codec.js'

function ramp (n: number): Float32Array {
  return new Float32Array(n).map((_, i) => Math.sin(i * 0.37) * 100 + i * 1e-3)
}

describe('tensor codec', () => {
  it('round-trips float32 exactly, without copying on encode', () => {
    const data = ramp(2 * 3 * 5)
    const wire = encodeTensor(data, [2, 3, 5])
    expect(wire.dtype).toBe('float32')
    expect(wire.data.buffer).toBe(data.buffer)
    const back = decodeTensor(wire)
    expect(back.dims).toEqual([2, 3, 5])
    expect(Array.from(back.data)).toEqual(Array.from(data))
  })

  it('round-trips float16 within float16 rounding, with special values', () => {
    const data = new Float32Array([...ramp(64), 0, -0, Infinity, -Infinity, NaN, 65504, 1e6, 6e-8, 1e-9])
    const wire = encodeTensor(data, [1, data.length], 'float16')
    expect(wire.data.byteLength).toBe(data.length * 2)
    const back = decodeTensor(wire).data
    for (let i = 0; i < data.length; i++) {
      const want = roundToFloat16(data[i]!)
      if (Number.isNaN(want)) expect(Number.isNaN(back[i])).toBe(true)
      else expect(Object.is(back[i], want)).toBe(true)
      if (Number.isFinite(data[i]) && Math.abs(data[i]!) < 65504 && Math.abs(data[i]!) > 1e-4) {
        expect(Math.abs(back[i]! - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -11)
      }
    }
    expect(back[data.length - 4]).toBe(65504)
    expect(back[data.length - 3]).toBe(Infinity) // 1e6 overflows
  })

  it('decodes payloads at unaligned offsets', () => {
    const data = ramp(12)
    for (const dtype of ['float32', 'float16'] as const) {
      const wire = encodeTensor(data, [3, 4], dtype)
      const shifted = new Uint8Array(wire.data.byteLength + 1)
      shifted.set(wire.data, 1)
      const back = decodeTensor({ ...wire, data: shifted.subarray(1) }).data
      expect(Array.from(back)).toEqual(Array.from(decodeTensor(wire).data))
    }
  })

  it('handles zero-sized and scalar tensors', () => {
    expect(decodeTensor(encodeTensor(new Float32Array(0), [1, 0, 8])).data.length).toBe(0)
    expect(Array.from(decodeTensor(encodeTensor(new Float32Array([7]), [])).data)).toEqual([7])
  })

  it('refuses to encode data that does not fit its dims', () => {
    expect(() => encodeTensor(new Float32Array(5), [2, 3])).toThrow(BadShapeError)
    expect(() => encodeTensor(new Float32Array(6), [2, -3])).toThrow(BadShapeError)
  })

  const good = (): WireTensor => encodeTensor(ramp(6), [2, 3])
  const cases: Array<[string, unknown, string]> = [
    ['not an object', 'tensor', 'BAD_MESSAGE'],
    ['null', null, 'BAD_MESSAGE'],
    ['unknown dtype', { ...good(), dtype: 'bfloat16' }, 'BAD_MESSAGE'],
    ['missing dtype', { dims: [2, 3], data: good().data }, 'BAD_MESSAGE'],
    ['dims not an array', { ...good(), dims: 6 }, 'BAD_MESSAGE'],
    ['negative dim', { ...good(), dims: [-2, -3] }, 'BAD_MESSAGE'],
    ['fractional dim', { ...good(), dims: [1.5, 4] }, 'BAD_MESSAGE'],
    ['string dim', { ...good(), dims: ['2', 3] }, 'BAD_MESSAGE'],
    ['data as number array', { ...good(), data: [1, 2, 3] }, 'BAD_MESSAGE'],
    ['data missing', { dtype: 'float32', dims: [2, 3] }, 'BAD_MESSAGE'],
    ['too few bytes', { ...good(), data: new Uint8Array(20) }, 'BAD_SHAPE'],
    ['too many bytes', { ...good(), data: new Uint8Array(28) }, 'BAD_SHAPE'],
    ['float16 size with float32 bytes', { ...good(), dtype: 'float16' }, 'BAD_SHAPE'],
    ['rank 9', { ...good(), dims: [1, 1, 1, 1, 1, 1, 1, 2, 3] }, 'BAD_SHAPE'],
    ['over the element limit', { dtype: 'float32', dims: [1, 4096, 4096], data: new Uint8Array(4) }, 'TOO_LARGE'],
    ['overflowing dims', { dtype: 'float32', dims: [2 ** 52, 2 ** 52], data: new Uint8Array(4) }, 'TOO_LARGE']
  ]
  for (const [name, value, code] of cases) {
    it(`rejects ${name} with ${code}`, () => {
      expect(() => decodeTensor(value, { maxTensorElements: 1 << 20 })).toThrow(expect.objectContaining({ code }))
    })
  }

  it('names the field, the expectation and the value in errors', () => {
    expect(() => parseWireTensor({ ...good(), dtype: 'int8' }, 'run.hidden')).toThrow(BadMessageError)
    expect(() => parseWireTensor({ ...good(), dtype: 'int8' }, 'run.hidden'))
      .toThrow('Invalid run.hidden.dtype: expected one of float32, float16, got string "int8"')
    expect(() => parseWireTensor({ ...good(), data: new Uint8Array(4) }, 'run.hidden'))
      .toThrow('dims [2, 3] of float32 need 24 bytes, data has 4')
    expect(() => parseWireTensor({ dtype: 'float16', dims: [9], data: new Uint8Array(18) }, 't', { maxTensorElements: 8 }))
      .toThrow(TooLargeError)
  })
})
