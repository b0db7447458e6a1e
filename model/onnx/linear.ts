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
