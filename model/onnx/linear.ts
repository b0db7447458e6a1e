import { quantizationBits, quantizeWeight, type Quantization } from '../quantize.js'
import type { GraphBuilder } from './graph-builder.js'

/**
 * A Linear layer in Hugging Face layout: x (B,T,in) @ W^T with W (out, in), as
 * Gemm(transB=1) on (B*T, in). Keeping W as stored skips a transpose at load, and ORT's
 * transposed-B GEMM streams W rows straight through for single-token decode.
 * `bt` is the int64 (2) tensor [B, T] of the graph's hidden input; `bias` (out), if any, is added.
 */
export function emitLinear (g: GraphBuilder, x: string, bt: string, weight: string, inDim: number, outDim: number, bias?: string): string {
  const flat = g.op('Reshape', [x, g.ints([-1, inDim])]) // (B*T, in)
  const y = g.op('Gemm', bias === undefined ? [flat, weight] : [flat, weight, bias], { transB: 1 }) // (B*T, out) [+ bias (out)]
  return g.op('Reshape', [y, g.op('Concat', [bt, g.ints([outDim])], { axis: 0 })]) // (B,T,out)
}

/** [B, T] of a (B,T,...) value, for emitLinear. */
export function emitBatchTime (g: GraphBuilder, x: string): string {
  return g.op('Slice', [g.op('Shape', [x]), g.ints([0]), g.ints([2])])
}

/** Stacks weights (out_i, in) along out: [q; k; v] -> (sum out_i, in), so one GEMM computes them all. */
export function concatRows (parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * A Linear layer from its weight W (out, in) as held in memory: float32 (emitLinear) or, with
 * `int8`/`int4`, onnxruntime's MatMulNBits over W quantized in blocks along `in`
 * (model/quantize.ts), which takes x (B,T,in) as it is. `bias` (out), if any, is added.
 * accuracy_level 4 computes in int8 (x quantized per block on the fly): on this AVX2 VM a
 * 1024 x 5632 layer's 4-bit decode step took 0.44 ms against 1.39 ms at level 0 (float math
 * over dequantized blocks) and 1.10 ms in float32, adding at most 6e-4 to the outputs of the
 * dequantized weights (.cache/q4-check.ts).
 */
export function emitWeightLinear (g: GraphBuilder, x: string, bt: string, prefix: string, weight: Float32Array, inDim: number, outDim: number, quantization: Quantization = 'none', bias?: string): string {
  if (quantization === 'none') return emitLinear(g, x, bt, g.floats(prefix, weight, [outDim, inDim]), inDim, outDim, bias)
  const y = emitQuantizedLinear(g, x, prefix, weight, inDim, outDim, quantization)
  return bias === undefined ? y : g.op('Add', [y, bias])
}

/**
 * x (..., in) @ W^T through MatMulNBits, W (out, in) quantized here -> (..., out); no bias.
 * `accuracyLevel` 4 (the default) lets the kernel quantize x to int8 per block; 0 keeps x in
 * float32 (the GPU span graph's choice: onnxruntime's WebGPU kernel takes the int8 path only
 * for several rows, so a session's outputs would depend on its batch).
 */
export function emitQuantizedLinear (g: GraphBuilder, x: string, prefix: string, weight: Float32Array, inDim: number, outDim: number, quantization: Exclude<Quantization, 'none'>, accuracyLevel: 0 | 4 = 4): string {
  const q = quantizeWeight(weight, outDim, inDim, quantizationBits(quantization))
  const kBlocks = Math.ceil(inDim / q.blockSize)
  return g.op('MatMulNBits', [
    x,
    g.bytes(`${prefix}_q${q.bits}`, q.codes, [outDim, kBlocks, (q.blockSize * q.bits) / 8]),
    g.floats(`${prefix}_scales`, q.scales, [outDim * kBlocks]),
    g.bytes(`${prefix}_zp`, q.zeroPoints, [q.zeroPoints.length])
  ], { K: inDim, N: outDim, bits: q.bits, block_size: q.blockSize, accuracy_level: accuracyLevel }, 'com.microsoft')
}
