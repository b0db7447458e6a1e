/**
 * Tensors on the wire: `{ dtype, dims, data }` with little-endian element
 * bytes. float32 is exact; float16 halves the bytes of activations.
 */
import { BadMessageError, BadShapeError, InternalError, TooLargeError } from './errors.js'
import { decodeFloat16, encodeFloat16 } from './float16.js'
import { DEFAULT_LIMITS, type Limits } from './limits.js'
import { describe, expectFields } from './validate.js'

/** Element types that may travel on the wire. */
export const WIRE_DTYPES = ['float32', 'float16'] as const

/** An element type that may travel on the wire. */
export type WireDtype = typeof WIRE_DTYPES[number]

/** A tensor as it travels: row-major, little-endian; data.byteLength = prod(dims) * bytesPerElement(dtype). */
export interface WireTensor {
  dtype: WireDtype
  dims: number[]
  data: Uint8Array
}

/** A decoded tensor: float32 values, row-major. */
export interface Tensor<D extends readonly number[] = number[]> {
  data: Float32Array
  dims: D
}

/** Most dimensions a wire tensor may have. */
export const MAX_TENSOR_RANK = 8

const BYTES_PER_ELEMENT: Record<WireDtype, number> = { float32: 4, float16: 2 }
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

function checkHost (): void {
  if (!LITTLE_ENDIAN) throw new InternalError('Cannot convert tensors on a big-endian host: the wire format is little-endian')
}

/** Element count of dims (1 for a scalar). */
export function numElements (dims: readonly number[]): number {
  let n = 1
  for (const d of dims) n *= d
  return n
}

/**
 * Encodes float32 values for the wire. With float32 the result shares
 * memory with `data` (no copy); float16 allocates the halved bytes.
 * data (prod(dims),) float32 -> WireTensor
 */
export function encodeTensor (data: Float32Array, dims: readonly number[], dtype: WireDtype = 'float32'): WireTensor {
  checkHost()
  const n = numElements(dims)
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0) || n !== data.length) {
    throw new BadShapeError(`Cannot encode tensor of dims [${dims.join(', ')}]: it needs ${n} elements, data has ${data.length}`)
  }
  const bytes = dtype === 'float32'
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(encodeFloat16(data).buffer)
  return { dtype, dims: [...dims], data: bytes }
}

/**
 * Checks that `value` is a well-formed wire tensor: known dtype (else
 * BAD_MESSAGE), dims of non-negative safe integers (BAD_MESSAGE), rank <=
 * MAX_TENSOR_RANK (BAD_SHAPE), at most maxTensorElements elements
 * (TOO_LARGE) and exactly prod(dims) * bytesPerElement bytes (BAD_SHAPE).
 * `what` names the field in error messages, e.g. "run.hidden".
 */
export function parseWireTensor (value: unknown, what = 'tensor', limits: Pick<Limits, 'maxTensorElements'> = DEFAULT_LIMITS): WireTensor {
  const obj = expectFields(value, what)
  const { dtype, dims, data } = obj
  if (dtype !== 'float32' && dtype !== 'float16') {
    throw new BadMessageError(`Invalid ${what}.dtype: expected one of ${WIRE_DTYPES.join(', ')}, got ${describe(dtype)}`)
  }
  if (!Array.isArray(dims) || !dims.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw new BadMessageError(`Invalid ${what}.dims: expected an array of non-negative integers, got ${describe(dims)}`)
  }
  if (dims.length > MAX_TENSOR_RANK) {
    throw new BadShapeError(`Invalid ${what}.dims: rank must be <= ${MAX_TENSOR_RANK}, got ${dims.length}`)
  }
  if (!(data instanceof Uint8Array)) {
    throw new BadMessageError(`Invalid ${what}.data: expected bytes, got ${describe(data)}`)
  }
  const n = numElements(dims as number[]) // a double: may exceed 2^53 for absurd dims, still compares correctly
  if (n > limits.maxTensorElements) {
    throw new TooLargeError(`Cannot accept ${what} of dims [${dims.join(', ')}]: ${n} elements, limit is ${limits.maxTensorElements}`)
  }
  const expected = n * BYTES_PER_ELEMENT[dtype]
  if (data.byteLength !== expected) {
    throw new BadShapeError(`Invalid ${what}: dims [${dims.join(', ')}] of ${dtype} need ${expected} bytes, data has ${data.byteLength}`)
  }
  return { dtype, dims: dims as number[], data }
}

/**
 * Validates a wire tensor (see {@link parseWireTensor}) and converts it to
 * float32. An aligned float32 payload is returned as a view of `wire.data`
 * (no copy); otherwise the values are copied.
 */
export function decodeTensor<T extends WireTensor> (wire: T, limits?: Pick<Limits, 'maxTensorElements'>, what?: string): Tensor<T['dims']>
export function decodeTensor (wire: unknown, limits?: Pick<Limits, 'maxTensorElements'>, what?: string): Tensor
export function decodeTensor (wire: unknown, limits: Pick<Limits, 'maxTensorElements'> = DEFAULT_LIMITS, what = 'tensor'): Tensor {
  checkHost()
  const { dtype, dims, data } = parseWireTensor(wire, what, limits)
  const n = numElements(dims)
  if (dtype === 'float32') {
    const aligned = data.byteOffset % 4 === 0 ? data : new Uint8Array(data) // a copy starts a new, aligned buffer
    return { data: new Float32Array(aligned.buffer, aligned.byteOffset, n), dims }
  }
  const aligned = data.byteOffset % 2 === 0 ? data : new Uint8Array(data)
  return { data: decodeFloat16(new Uint16Array(aligned.buffer, aligned.byteOffset, n)), dims }
}

/** Bytes that a tensor of `dims` takes on the wire in `dtype`. */
export function wireByteLength (dims: readonly number[], dtype: WireDtype): number {
  return numElements(dims) * BYTES_PER_ELEMENT[dtype]
}
