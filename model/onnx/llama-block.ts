import type { LlamaConfig } from '../config.js'
import type { BlockWeights } from '../weights.js'
import { ropeInverseFrequencies } from '../rope.js'
import type { GraphBuilder } from './graph-builder.js'
import type { Quantization } from '../quantize.js'
import { concatRows, emitBatchTime, emitWeightLinear } from './linear.js'

/** The ONNX opset block graphs import: 23 brings Attention (grouped-query, boolean mask) and RotaryEmbedding. */
export const BLOCK_OPSET = 23

/** Values shared by every block of one graph: rotary tables and the attention mask. */
export interface BlockContext {
  /** (B,T,D/2) */ readonly cos: string
  /** (B,T,D/2) */ readonly sin: string
  /** (T,S) bool, S = P+T: token t may attend to slot s (cache slots, then the run's rows) */ readonly visible: string
}

/** Names of one block's graph values. */
export interface BlockIo {
  /** (B,T,C) in */ readonly hidden: string
  /** (B,P,Hkv,D) cache of keys before this run (after RoPE) */ readonly pastKey: string
  /** (B,P,Hkv,D) */ readonly pastValue: string
}

export interface BlockOut {
  /** (B,T,C) */ readonly hidden: string
  /** (B,T,Hkv,D) keys of the new tokens, to append to the cache */ readonly newKey: string
  /** (B,T,Hkv,D) */ readonly newValue: string
}

/**
 * Rotary tables from positions, as Hugging Face computes them: angles = positions *
 * inv_freq (float32, model/rope.ts), and their cos/sin; the rotate-half layout
 * applies the same table to both halves of a head (RotaryEmbedding, interleaved 0).
 */
export function emitRotary (g: GraphBuilder, cfg: LlamaConfig, positions: string, visible: string): BlockContext {
  const half = cfg.headDim / 2
  const invFreq = Float32Array.from(ropeInverseFrequencies(cfg))
  const pos = g.op('Cast', [positions], { to: 1 }) // (B,T) float32
  const angles = g.op('Mul', [g.op('Unsqueeze', [pos, g.ints([-1])]), g.floats('inv_freq', invFreq, [half])]) // (B,T,D/2)
  return { cos: g.op('Cos', [angles]), sin: g.op('Sin', [angles]), visible }
}

export function emitRmsNorm (g: GraphBuilder, x: string, weight: Float32Array, eps: number): string {
  // ORT runs x / sqrt(mean(x^2) + eps) * w as one kernel (registered in the ONNX domain).
  return g.op('SimplifiedLayerNormalization', [x, g.floats('norm_w', weight, [weight.length])], { axis: -1, epsilon: { float: eps }, stash_type: 1 })
}

/**
 * One Llama decoder block: pre-norm attention with grouped-query heads over the cache and
 * the run's rows, then a pre-norm SwiGLU MLP, each added to the residual stream.
 *
 * Attention and RoPE are opset 23's fused ops on 3-D (B,T,heads*D) values, about 20 nodes a
 * block: a tiny model's step costs what ORT spends per node, and spelling attention out in
 * ONNX-17 ops (60 nodes) made stories260k's blocks 1.3-1.4x slower. The cache is read as
 * (B,P,Hkv*D), its own layout, and only the run's new keys and values come out, so the
 * caller appends them and no graph ever returns a whole cache.
 */
export function emitLlamaBlock (g: GraphBuilder, cfg: LlamaConfig, w: BlockWeights, ctx: BlockContext, io: BlockIo, quantization: Quantization = 'none'): BlockOut {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = cfg
  const bt = emitBatchTime(g, io.hidden)
  const linear = (x: string, prefix: string, weight: Float32Array, inDim: number, outDim: number, bias?: string): string =>
    emitWeightLinear(g, x, bt, prefix, weight, inDim, outDim, quantization, bias)

  // --- attention ---
  const qkvBias = w.qBias === undefined ? undefined : g.floats('b_qkv', concatRows([w.qBias, w.kBias as Float32Array, w.vBias as Float32Array]), [(H + 2 * Hkv) * D])
  const qkv = linear(emitRmsNorm(g, io.hidden, w.inputNorm, cfg.rmsNormEps), 'w_qkv', concatRows([w.q, w.k, w.v]), C, (H + 2 * Hkv) * D, qkvBias) // (B,T,(H+2Hkv)*D)
  const [q, k, v] = g.opN('Split', [qkv, g.ints([H * D, Hkv * D, Hkv * D])], 3, { axis: -1 }) as [string, string, string]
  // Qwen3 normalizes every query and key head (width D) before RoPE
  const headNorm = (x: string, heads: number, weight: Float32Array | undefined): string => weight === undefined
    ? x
    : g.op('Reshape', [emitRmsNorm(g, g.op('Reshape', [x, g.ints([0, 0, heads, D])]), weight, cfg.rmsNormEps), g.ints([0, 0, heads * D])])
  const qRot = g.op('RotaryEmbedding', [headNorm(q, H, w.qNorm), ctx.cos, ctx.sin], { num_heads: H }) // (B,T,H*D)
  const kRot = g.op('RotaryEmbedding', [headNorm(k, Hkv, w.kNorm), ctx.cos, ctx.sin], { num_heads: Hkv }) // (B,T,Hkv*D)
  const flat = g.ints([0, 0, Hkv * D])
  const keys = g.op('Concat', [g.op('Reshape', [io.pastKey, flat]), kRot], { axis: 1 }) // (B,S,Hkv*D), S = P+T
  const values = g.op('Concat', [g.op('Reshape', [io.pastValue, flat]), v], { axis: 1 }) // (B,S,Hkv*D)
  // query head h reads kv head h / (H / Hkv); scale 1/sqrt(D); the mask comes from the
  // caller: causal for a chain, ancestors only for a token tree
  const attn = g.op('Attention', [qRot, keys, values, ctx.visible], { q_num_heads: H, kv_num_heads: Hkv }) // (B,T,H*D)
  const oBias = w.oBias === undefined ? undefined : g.floats('b_o', w.oBias, [C])
  const afterAttn = g.op('Add', [io.hidden, linear(attn, 'w_o', w.o, H * D, C, oBias)]) // (B,T,C)

  // --- MLP: down(silu(gate(x)) * up(x)) ---
  const gateUp = linear(emitRmsNorm(g, afterAttn, w.postNorm, cfg.rmsNormEps), 'w_gate_up', concatRows([w.gate, w.up]), C, 2 * F)
  const [gate, up] = g.opN('Split', [gateUp, g.ints([F, F])], 2, { axis: -1 }) as [string, string]
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]) // (B,T,F)
  const mlpOut = linear(act, 'w_down', w.down, F, C)
  const perHead = g.ints([0, 0, Hkv, D])
  return {
    hidden: g.op('Add', [afterAttn, mlpOut]),
    newKey: g.op('Reshape', [kRot, perHead]),
    newValue: g.op('Reshape', [v, perHead])
  }
}
