/** Hidden-state tensors of runs, results and pushes: dims (1, T, C). */
import { BadMessageError, BadShapeError, TooLargeError } from './errors.js'
import { DEFAULT_LIMITS, type Limits } from './limits.js'
import { parseWireTensor, type WireTensor } from './tensor-codec.js'
import { readOptList, type Fields } from './validate.js'

/** Hidden states of T consecutive tokens: dims (B=1, T, C). */
export interface HiddenTensor extends WireTensor {
  dims: [b: number, t: number, c: number]
}

/**
 * Parses a hidden-state tensor: a valid wire tensor (see parseWireTensor)
 * of rank 3 with B = 1, T >= 1 and C >= 1 (BAD_SHAPE), and T <=
 * maxTokensPerRun (TOO_LARGE).
 */
export function parseHidden (value: unknown, what: string, limits: Pick<Limits, 'maxTensorElements' | 'maxTokensPerRun'> = DEFAULT_LIMITS): HiddenTensor {
  const wire = parseWireTensor(value, what, limits)
  const [b, t, c] = wire.dims
  if (wire.dims.length !== 3 || b !== 1 || t === undefined || c === undefined || t < 1 || c < 1) {
    throw new BadShapeError(`Invalid ${what}.dims: expected (1, T >= 1, C >= 1), got [${wire.dims.join(', ')}]`)
  }
  if (t > limits.maxTokensPerRun) {
    throw new TooLargeError(`Cannot accept ${what} of ${t} tokens: limit is ${limits.maxTokensPerRun} tokens per run`)
  }
  return { dtype: wire.dtype, dims: [b, t, c], data: wire.data }
}

/** Throws BadShapeError unless the hidden size C of `hidden` (1, T, C) equals `hiddenSize`. */
export function assertHiddenSize (hidden: HiddenTensor, hiddenSize: number, what = 'hidden'): void {
  const [, , c] = hidden.dims
  if (c !== hiddenSize) {
    throw new BadShapeError(`Invalid ${what}: hidden size must be ${hiddenSize}, got ${c} (dims [${hidden.dims.join(', ')}])`)
  }
}

/** Largest activation magnitude a run may carry: far above any model's, far below float32's overflow. */
export const MAX_ACTIVATION = 1e30

/**
 * Throws BAD_MESSAGE at the first value of `data` that is NaN, infinite or beyond
 * ±MAX_ACTIVATION. A server packs several sessions' runs into one pass (batched decode), whose
 * attention multiplies every row by every cached value, masked ones by 0: a NaN in one
 * session's cache would reach the others' outputs (0 * NaN is NaN). Finite, bounded inputs
 * keep every cache finite (each block normalizes its input before the projections).
 */
export function assertActivations (data: Float32Array, what: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number
    if (!(v >= -MAX_ACTIVATION && v <= MAX_ACTIVATION)) {
      throw new BadMessageError(`Invalid ${what}: value ${v} at index ${i}; activations must be finite and within ±${MAX_ACTIVATION}`)
    }
  }
}

/**
 * Parses the optional `carried` list of a push or result (push mode with run.carry): the
 * outputs of the route's earlier hops, in route order, each the same shape and dtype as the
 * message's own `hidden` (BAD_SHAPE otherwise), at most `maxLength` of them.
 */
export function parseCarried (obj: Fields, what: string, hidden: HiddenTensor, limits: Pick<Limits, 'maxTensorElements' | 'maxTokensPerRun'>, maxLength: number): HiddenTensor[] | undefined {
  return readOptList(obj, 'carried', what, (value, path) => {
    const t = parseHidden(value, path, limits)
    if (t.dtype !== hidden.dtype || t.dims.some((d, i) => d !== hidden.dims[i])) {
      throw new BadShapeError(`Invalid ${path}: expected ${hidden.dtype} [${hidden.dims.join(', ')}] like ${what}.hidden, got ${t.dtype} [${t.dims.join(', ')}]`)
    }
    return t
  }, maxLength)
}
