import type { LlamaConfig } from '../config.js'
import type { BlockWeights } from '../weights.js'
import type { GraphBuilder } from './graph-builder.js'
import { concatRows, emitBatchTime, emitLinear } from './linear.js'

/** Values shared by every block of one graph: rotary tables and the attention mask. */
export interface BlockContext {
  /** (B,T,1,D/2) */ readonly cos: string
  /** (B,T,1,D/2) */ readonly sin: string
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
 * Rotary tables from positions, as Hugging Face's default RoPE computes them:
 * freqs = positions * inv_freq (float32), cos/sin of that; the rotate-half layout
 * applies the same table to both halves of a head.
 */
export function emitRotary (g: GraphBuilder, cfg: LlamaConfig, positions: string, visible: string): BlockContext {
  const freqs4 = g.op('Unsqueeze', [emitRotaryAngles(g, cfg, positions), g.ints([2])]) // (B,T,1,D/2)
  return { cos: g.op('Cos', [freqs4]), sin: g.op('Sin', [freqs4]), visible }
}

/** positions (B,T) int64 -> rotary angles (B,T,D/2) float32: positions * inv_freq. */
export function emitRotaryAngles (g: GraphBuilder, cfg: LlamaConfig, positions: string): string {
  const half = cfg.headDim / 2
  const invFreq = new Float32Array(half)
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim)
  const pos = g.op('Cast', [positions], { to: 1 }) // (B,T) float32
  return g.op('Mul', [g.op('Unsqueeze', [pos, g.ints([-1])]), g.floats('inv_freq', invFreq, [half])]) // (B,T,D/2)
}

/** x (B,T,N,D) -> rotate-half RoPE with cos/sin (B,T,1,D/2) */
function applyRotary (g: GraphBuilder, ctx: BlockContext, x: string, half: number): string {
  const [x1, x2] = g.opN('Split', [x, g.ints([half, half])], 2, { axis: -1 }) as [string, string]
  const r1 = g.op('Sub', [g.op('Mul', [x1, ctx.cos]), g.op('Mul', [x2, ctx.sin])])
  const r2 = g.op('Add', [g.op('Mul', [x2, ctx.cos]), g.op('Mul', [x1, ctx.sin])])
  return g.op('Concat', [r1, r2], { axis: -1 })
}

function rmsNorm (g: GraphBuilder, x: string, weight: Float32Array, eps: number): string {
  // ORT fuses x / sqrt(mean(x^2) + eps) * w into one kernel (registered in the ONNX domain).
  return g.op('SimplifiedLayerNormalization', [x, g.floats('norm_w', weight, [weight.length])], { axis: -1, epsilon: { float: eps }, stash_type: 1 })
}

/**
 * One Llama decoder block: pre-norm attention with grouped-query heads and a KV cache,
 * then a pre-norm SwiGLU MLP, each added to the residual stream.
 */
export function emitLlamaBlock (g: GraphBuilder, cfg: LlamaConfig, w: BlockWeights, ctx: BlockContext, io: BlockIo): BlockOut {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = cfg
  const G = H / Hkv

  // --- attention ---
  const xNorm = rmsNorm(g, io.hidden, w.inputNorm, cfg.rmsNormEps) // (B,T,C)
  const bt = emitBatchTime(g, io.hidden)
  const wQkv = g.floats('w_qkv', concatRows([w.q, w.k, w.v]), [(H + 2 * Hkv) * D, C])
  const qkv = emitLinear(g, xNorm, bt, wQkv, C, (H + 2 * Hkv) * D) // (B,T,(H+2Hkv)*D)
  const [q, k, v] = g.opN('Split', [qkv, g.ints([H * D, Hkv * D, Hkv * D])], 3, { axis: -1 }) as [string, string, string]
  const qRot = applyRotary(g, ctx, g.op('Reshape', [q, g.ints([0, 0, H, D])]), D / 2) // (B,T,H,D)
  const newKey = applyRotary(g, ctx, g.op('Reshape', [k, g.ints([0, 0, Hkv, D])]), D / 2) // (B,T,Hkv,D)
  const newValue = g.op('Reshape', [v, g.ints([0, 0, Hkv, D])]) // (B,T,Hkv,D)

  const keys = g.op('Concat', [io.pastKey, newKey], { axis: 1 }) // (B,S,Hkv,D), S = P+T
  const values = g.op('Concat', [io.pastValue, newValue], { axis: 1 }) // (B,S,Hkv,D)

  // (B,T,H,D) -> (B,H,T,D) -> (B,Hkv,G,T,D): query head h reads kv head h / G
  const qGrouped = g.op('Reshape', [g.op('Transpose', [qRot], { perm: [0, 2, 1, 3] }), g.ints([0, Hkv, G, -1, D])])
  const kT = g.op('Unsqueeze', [g.op('Transpose', [keys], { perm: [0, 2, 3, 1] }), g.ints([2])]) // (B,Hkv,1,D,S)
  const scores = g.op('Mul', [g.op('MatMul', [qGrouped, kT]), g.scalar(1 / Math.sqrt(D))]) // (B,Hkv,G,T,S)

  // the mask comes from the caller: causal for a chain, ancestors only for a token tree
  const masked = g.op('Where', [ctx.visible, scores, g.scalar(-Infinity)]) // (T,S) broadcasts over (B,Hkv,G)
  const probs = g.op('Softmax', [masked], { axis: -1 })

  const vT = g.op('Unsqueeze', [g.op('Transpose', [values], { perm: [0, 2, 1, 3] }), g.ints([2])]) // (B,Hkv,1,S,D)
  const attn = g.op('MatMul', [probs, vT]) // (B,Hkv,G,T,D)
  const heads = g.op('Transpose', [g.op('Reshape', [attn, g.ints([0, H, -1, D])])], { perm: [0, 2, 1, 3] }) // (B,T,H,D)
  const attnOut = emitLinear(g, heads, bt, g.floats('w_o', w.o, [C, H * D]), H * D, C) // (B,T,C)
  const afterAttn = g.op('Add', [io.hidden, attnOut]) // (B,T,C)

  // --- MLP: down(silu(gate(x)) * up(x)) ---
  const mNorm = rmsNorm(g, afterAttn, w.postNorm, cfg.rmsNormEps)
  const wGateUp = g.floats('w_gate_up', concatRows([w.gate, w.up]), [2 * F, C])
  const [gate, up] = g.opN('Split', [emitLinear(g, mNorm, bt, wGateUp, C, 2 * F), g.ints([F, F])], 2, { axis: -1 }) as [string, string]
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]) // (B,T,F)
  const mlpOut = emitLinear(g, act, bt, g.floats('w_down', w.down, [C, F]), F, C)
  return { hidden: g.op('Add', [afterAttn, mlpOut]), newKey, newValue }
}
