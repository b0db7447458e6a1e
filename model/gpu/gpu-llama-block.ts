import type { LlamaConfig } from '../config.js'
import type { BlockWeights } from '../weights.js'
import type { GraphBuilder } from '../onnx/graph-builder.js'
import { concatRows, emitQuantizedLinear } from '../onnx/linear.js'
import type { Quantization } from '../quantize.js'
import { emitRmsNorm } from '../onnx/llama-block.js'

/**
 * Values every block of a GPU span graph shares. All of them are inputs computed on the JS
 * side (the rotary tables for the run's rows, and the row indices RotaryEmbedding reads), so
 * that no int64 shape arithmetic (which the WebGPU EP leaves on the CPU) runs between GPU kernels.
 */
export interface GpuBlockContext {
  /** (T,D/2) rotary cos of the new tokens' positions, row t for token t */ readonly cos: string
  /** (T,D/2) */ readonly sin: string
  /** (1,T) int64 0..T-1: token t reads row t of cos/sin */ readonly rows: string
  /** (1,1,1,T,S) additive causal mask: 0 where slot s is visible to token t, else -1e30 */ readonly mask: string
  /** (1) int64 positions of the past to keep: the cache is sliced to [0, past_len) */ readonly pastLen: string
}

export interface GpuBlockIo {
  /** (1,T,C) */ readonly hidden: string
  /** (1,Hkv,D,P') keys after RoPE, stored transposed; P' >= past_len */ readonly pastKey: string
  /** (1,Hkv,P',D) */ readonly pastValue: string
}

export interface GpuBlockOut {
  /** (1,T,C) */ readonly hidden: string
  /** (1,Hkv,D,S) past ++ new keys, S = past_len + T */ readonly presentKey: string
  /** (1,Hkv,S,D) */ readonly presentValue: string
}

/** (out, in) row-major -> (in, out), so that MatMul(x, W^T) needs no Gemm and no reshape. */
export function transposeRows (w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length)
  for (let r = 0; r < rows; r++) {
    const src = r * cols
    for (let c = 0; c < cols; c++) t[c * rows + r] = w[src + c] as number
  }
  return t
}

/**
 * x (1,T,in) @ W^T -> (1,T,out) for W (out_i, in) stacked along out (Hugging Face's layout):
 * a MatMul over W transposed once here (no Gemm, no reshape), or with `int8`/`int4` a
 * MatMulNBits over W quantized in blocks along `in`, row by row as the CPU graphs do, so
 * stacking changes no row's codes; x stays float32 (accuracy level 0), so that a session's
 * outputs do not depend on how many rows its batch has.
 */
function emitStackedLinear (g: GraphBuilder, x: string, name: string, parts: readonly Float32Array[], inDim: number, quantization: Quantization): string {
  const stacked = parts.length === 1 ? parts[0] as Float32Array : concatRows(parts)
  const outDim = stacked.length / inDim
  if (quantization !== 'none') return emitQuantizedLinear(g, x, name, stacked, inDim, outDim, quantization, 0)
  return g.op('MatMul', [x, g.floats(`${name}_t`, transposeRows(stacked, outDim, inDim), [inDim, outDim])])
}

/**
 * x (1,T,N*D) -> rotate-half RoPE, (1,T,N,D). One contrib RotaryEmbedding kernel instead of
 * the eight elementwise ones rotate-half spells out: on the WebGPU EP every kernel costs
 * 20-80 us of dispatch, which is what a GPU span's decode step is made of.
 */
function applyRotary (g: GraphBuilder, ctx: GpuBlockContext, x: string, heads: number, D: number): string {
  const rotated = g.op('RotaryEmbedding', [x, ctx.rows, ctx.cos, ctx.sin], { interleaved: 0 }, 'com.microsoft') // (1,T,N*D)
  return g.op('Reshape', [rotated, g.ints([1, -1, heads, D])])
}

/**
 * One Llama decoder block for the GPU-resident span: the same function as
 * onnx/llama-block.ts, but batch 1, every shape a constant, the KV cache in head-major
 * layout (keys pre-transposed) so that no per-step transpose touches the whole cache, and
 * the past sliced to `past_len` inside the graph (rollback costs nothing).
 */
export function emitGpuLlamaBlock (g: GraphBuilder, cfg: LlamaConfig, w: BlockWeights, ctx: GpuBlockContext, io: GpuBlockIo, quantization: Quantization = 'none'): GpuBlockOut {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = cfg
  const G = H / Hkv

  // --- attention ---
  const xNorm = emitRmsNorm(g, io.hidden, w.inputNorm, cfg.rmsNormEps) // (1,T,C)
  // Attention's 1/sqrt(D) rides on the queries (RoPE is linear): on W_q and its bias, or, where
  // Qwen3 normalizes the query heads (which undoes any scale before it), on that norm's weight.
  const scale = 1 / Math.sqrt(D)
  const scaled = (x: Float32Array | undefined): Float32Array | undefined => x?.map(v => v * scale)
  const [wq, bq, qNormW] = w.qNorm === undefined ? [scaled(w.q) as Float32Array, scaled(w.qBias), undefined] : [w.q, w.qBias, scaled(w.qNorm)]
  const qkvNoBias = emitStackedLinear(g, xNorm, 'w_qkv', [wq, w.k, w.v], C, quantization) // (1,T,(H+2Hkv)*D)
  const qkv = bq === undefined ? qkvNoBias : g.op('Add', [qkvNoBias, g.floats('b_qkv', concatRows([bq, w.kBias as Float32Array, w.vBias as Float32Array]), [(H + 2 * Hkv) * D])])
  const [q, k, v] = g.opN('Split', [qkv, g.ints([H * D, Hkv * D, Hkv * D])], 3, { axis: -1 }) as [string, string, string]
  // Qwen3 normalizes every query and key head (width D) before RoPE
  const headNorm = (x: string, heads: number, weight: Float32Array | undefined): string => weight === undefined
    ? x
    : g.op('Reshape', [emitRmsNorm(g, g.op('Reshape', [x, g.ints([1, -1, heads, D])]), weight, cfg.rmsNormEps), g.ints([1, -1, heads * D])])
  const qRot = applyRotary(g, ctx, headNorm(q, H, qNormW), H, D) // (1,T,H,D), times 1/sqrt(D)
  const kRot = applyRotary(g, ctx, headNorm(k, Hkv, w.kNorm), Hkv, D) // (1,T,Hkv,D)
  const vNew = g.op('Reshape', [v, g.ints([1, -1, Hkv, D])]) // (1,T,Hkv,D)

  const keep = (x: string, axis: number): string => g.op('Slice', [x, g.ints([0]), ctx.pastLen, g.ints([axis])])
  const presentKey = g.op('Concat', [keep(io.pastKey, 3), g.op('Transpose', [kRot], { perm: [0, 2, 3, 1] })], { axis: 3 }) // (1,Hkv,D,S)
  const presentValue = g.op('Concat', [keep(io.pastValue, 2), g.op('Transpose', [vNew], { perm: [0, 2, 1, 3] })], { axis: 2 }) // (1,Hkv,S,D)

  // (1,T,H,D) -> (1,H,T,D) -> (1,Hkv,G,T,D): query head h reads kv head h / G
  const qGrouped = g.op('Reshape', [g.op('Transpose', [qRot], { perm: [0, 2, 1, 3] }), g.ints([1, Hkv, G, -1, D])])
  const kT = g.op('Unsqueeze', [presentKey, g.ints([2])]) // (1,Hkv,1,D,S)
  const scores = g.op('MatMul', [qGrouped, kT]) // (1,Hkv,G,T,S), already scaled by 1/sqrt(D)
  const probs = g.op('Softmax', [g.op('Add', [scores, ctx.mask])], { axis: -1 })
  const vU = g.op('Unsqueeze', [presentValue, g.ints([2])]) // (1,Hkv,1,S,D)
  const attn = g.op('MatMul', [probs, vU]) // (1,Hkv,G,T,D)
  const heads = g.op('Transpose', [g.op('Reshape', [attn, g.ints([1, H, -1, D])])], { perm: [0, 2, 1, 3] }) // (1,T,H,D)
  const flat = g.op('Reshape', [heads, g.ints([1, -1, H * D])]) // (1,T,H*D)
  const attnOutNoBias = emitStackedLinear(g, flat, 'w_o', [w.o], H * D, quantization) // (1,T,C)
  const attnOut = w.oBias === undefined ? attnOutNoBias : g.op('Add', [attnOutNoBias, g.floats('b_o', w.oBias, [C])])
  const afterAttn = g.op('Add', [io.hidden, attnOut])

  // --- MLP: down(silu(gate(x)) * up(x)) ---
  const mNorm = emitRmsNorm(g, afterAttn, w.postNorm, cfg.rmsNormEps)
  const gateUp = emitStackedLinear(g, mNorm, 'w_gate_up', [w.gate, w.up], C, quantization) // (1,T,2F)
  const [gate, up] = g.opN('Split', [gateUp, g.ints([F, F])], 2, { axis: -1 }) as [string, string]
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]) // (1,T,F)
  const mlpOut = emitStackedLinear(g, act, 'w_down', [w.down], F, quantization) // (1,T,C)
  return { hidden: g.op('Add', [afterAttn, mlpOut]), presentKey, presentValue }
}
