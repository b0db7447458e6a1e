/**
 * Block-wise weight quantization to 4 or 8 bits, in the layout of onnxruntime's MatMulNBits
 * contrib op (Y = A @ dequant(B)^T): a Linear weight W (N, K) (Hugging Face's (out, in)) is cut
 * along K into blocks of `blockSize` values; each block keeps a float32 scale and a zero point,
 * and each value the code q = clamp(round(w / scale) + zp, 0, 2^bits - 1), so that
 * w ≈ (q - zp) * scale. 4-bit codes and zero points are packed two per byte, the lower index in
 * the low nibble; a block that runs past K is padded with zeros (code zp: exactly 0 dequantized).
 */

/** Weight formats blocks may be held in: float32 as in the checkpoint, or 8- or 4-bit blocks. */
export type Quantization = 'none' | 'int8' | 'int4'

/** Values per quantization block (a power of two >= 16, as MatMulNBits requires). */
export const QUANT_BLOCK_SIZE = 32

export interface QuantizedWeight {
  readonly n: number
  readonly k: number
  readonly bits: 4 | 8
  readonly blockSize: number
  /** (N, kBlocks, blockSize * bits / 8) codes */
  readonly codes: Uint8Array
  /** (N * kBlocks) */
  readonly scales: Float32Array
  /** (N * ceil(kBlocks * bits / 8)) zero points, each row padded to whole bytes */
  readonly zeroPoints: Uint8Array
}

/** Bits per code of a quantized format. */
export function quantizationBits (q: Exclude<Quantization, 'none'>): 4 | 8 {
  return q === 'int8' ? 8 : 4
}

/** Quantizes W (N, K), row-major, block by block along K (asymmetric: each block's min and max span the codes). */
export function quantizeWeight (w: Float32Array, n: number, k: number, bits: 4 | 8, blockSize = QUANT_BLOCK_SIZE): QuantizedWeight {
  if (w.length !== n * k) throw new RangeError(`Cannot quantize ${w.length} values as a (${n}, ${k}) weight`)
  if (!(blockSize >= 16 && (blockSize & (blockSize - 1)) === 0)) throw new RangeError(`Cannot quantize in blocks of ${blockSize}: a power of two >= 16 is needed`)
  const maxCode = 2 ** bits - 1
  const perByte = 8 / bits
  const kBlocks = Math.ceil(k / blockSize)
  const zpBytesPerRow = Math.ceil(kBlocks / perByte)
  const blobBytes = blockSize / perByte
  const codes = new Uint8Array(n * kBlocks * blobBytes)
  const scales = new Float32Array(n * kBlocks)
  const zeroPoints = new Uint8Array(n * zpBytesPerRow)
  /** Puts `value` into slot `i` of the packed array that starts at byte `at`. */
  const put = (into: Uint8Array, at: number, i: number, value: number): void => {
    const byte = at + Math.floor(i / perByte)
    into[byte] = (into[byte] as number) | (value << ((i % perByte) * bits))
  }
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < kBlocks; b++) {
      const from = row * k + b * blockSize
      const to = row * k + Math.min(k, (b + 1) * blockSize)
      // the range includes 0, so that padding and zeros stay exact
      let lo = 0
      let hi = 0
      for (let i = from; i < to; i++) {
        const x = w[i] as number
        if (x < lo) lo = x
        if (x > hi) hi = x
      }
      const scale = hi > lo ? (hi - lo) / maxCode : 1
      const zp = Math.min(maxCode, Math.max(0, Math.round(-lo / scale)))
      scales[row * kBlocks + b] = scale
      put(zeroPoints, row * zpBytesPerRow, b, zp)
      const blob = (row * kBlocks + b) * blobBytes
      for (let j = 0; j < blockSize; j++) {
        const x = from + j < to ? w[from + j] as number : 0
        put(codes, blob, j, Math.min(maxCode, Math.max(0, Math.round(x / scale) + zp)))
      }
    }
  }
  return { n, k, bits, blockSize, codes, scales, zeroPoints }
}

/** The float32 weight (N, K) that a quantized one stands for: (q - zp) * scale. */
export function dequantizeWeight (q: QuantizedWeight): Float32Array {
  const out = new Float32Array(q.n * q.k)
  for (let row = 0; row < q.n; row++) dequantizeRow(q, row, out, row * q.k)
  return out
}

/** Row `row` (K values) of a quantized weight, written into `into` from `at` (an embedding lookup). */
export function dequantizeRow (q: QuantizedWeight, row: number, into: Float32Array, at = 0): void {
  const { k, bits, blockSize } = q
  const perByte = 8 / bits
  const mask = 2 ** bits - 1
  const kBlocks = Math.ceil(k / blockSize)
  const zpBytesPerRow = Math.ceil(kBlocks / perByte)
  const get = (from: Uint8Array, start: number, i: number): number => ((from[start + Math.floor(i / perByte)] as number) >> ((i % perByte) * bits)) & mask
  for (let col = 0; col < k; col++) {
    const b = Math.floor(col / blockSize)
    const code = get(q.codes, (row * kBlocks + b) * (blockSize / perByte), col % blockSize)
    into[at + col] = (code - get(q.zeroPoints, row * zpBytesPerRow, b)) * (q.scales[row * kBlocks + b] as number)
  }
}
