import type { LlamaConfig } from '../config.js'
import type { BlockWeights, ClientWeights } from '../weights.js'
import { GraphBuilder } from './graph-builder.js'
import { concatRows } from './linear.js'
import { emitRotaryAngles } from './llama-block.js'

/** Graph input/output names of a whole model; index by block number. */
export const wholeModelNames = {
  ids: 'input_ids',
  positions: 'position_ids',
  mask: 'attention_mask',
  logits: 'logits',
  pastKey: (block: number) => `past_key_${block}`,
  pastValue: (block: number) => `past_value_${block}`,
  presentKey: (block: number) => `present_key_${block}`,
  presentValue: (block: number) => `present_value_${block}`
} as const

/**
 * A whole small model as one lean ONNX graph, for a draft run on the client:
 *   input_ids (B,T) int64, position_ids (B,T) int64, attention_mask (T,P+T) bool,
 *   past_key_i/past_value_i (B,Hkv,P,D)
 *   -> logits (B,T,V), present_key_i/present_value_i (B,Hkv,P+T,D)
 *
 * Why a second graph: a tiny draft costs what ORT spends per node, not arithmetic. The
 * block graph (llama-block.ts) spells attention and RoPE out in ~60 ONNX-17 nodes per block
 * and returns only the new keys, so that a server's cache is never copied; here opset 23's
 * Attention (grouped-query, boolean mask) and RotaryEmbedding take ~15, and the embedding
 * and head join the same session. On stories260k-draft a step took half the time (1 row:
 * 77-108 against 158-217 us; a 32-row tree: 219-233 against 344-407 us). The price is that
 * Attention returns the whole cache (present = past + new) each step, a copy only a tiny
 * model can shrug off.
 */
export function buildWholeModelGraph (cfg: LlamaConfig, blocks: readonly BlockWeights[], client: ClientWeights): Uint8Array {
  const { hiddenSize: C, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = cfg
  const g = new GraphBuilder({ opset: 23 })
  const ids = g.input(wholeModelNames.ids, 'int64', ['B', 'T'])
  const positions = g.input(wholeModelNames.positions, 'int64', ['B', 'T'])
  const mask = g.input(wholeModelNames.mask, 'bool', ['T', 'S'])
  // this run's rotary tables (B,T,D/2), as the block graph computes them: any position works
  const angles = emitRotaryAngles(g, cfg, positions)
  const cosCache = g.op('Cos', [angles])
  const sinCache = g.op('Sin', [angles])
  const rmsNorm = (x: string, w: Float32Array): string =>
    g.op('SimplifiedLayerNormalization', [x, g.floats('norm_w', w, [C])], { axis: -1, epsilon: { float: cfg.rmsNormEps }, stash_type: 1 })
  // x (B,T,in) @ W^T for W (out, in) stored as Hugging Face does
  const linear = (x: string, w: Float32Array, inDim: number, outDim: number): string =>
    g.op('MatMul', [x, g.floats('w', transposed(w, outDim, inDim), [inDim, outDim])])

  let x = g.op('Gather', [g.floats('embedding', client.embedding, [V, C]), ids], { axis: 0 }) // (B,T,C)
  blocks.forEach((w, b) => {
    const pastKey = g.input(wholeModelNames.pastKey(b), 'float32', ['B', Hkv, 'P', D])
    const pastValue = g.input(wholeModelNames.pastValue(b), 'float32', ['B', Hkv, 'P', D])
    const qkv = linear(rmsNorm(x, w.inputNorm), concatRows([w.q, w.k, w.v]), C, (H + 2 * Hkv) * D) // (B,T,(H+2Hkv)*D)
    const [q, k, v] = g.opN('Split', [qkv, g.ints([H * D, Hkv * D, Hkv * D])], 3, { axis: -1 }) as [string, string, string]
    // rotate-half RoPE (interleaved 0) over (B,T,N*D), heads told by num_heads
    const qRot = g.op('RotaryEmbedding', [q, cosCache, sinCache], { num_heads: H })
    const kRot = g.op('RotaryEmbedding', [k, cosCache, sinCache], { num_heads: Hkv })
    // query head h reads kv head h / (H / Hkv); scale 1/sqrt(D) by default
    const [attn, presentKey, presentValue] = g.opN('Attention', [qRot, kRot, v, mask, pastKey, pastValue], 3, { q_num_heads: H, kv_num_heads: Hkv }) as [string, string, string]
    g.rename(presentKey, wholeModelNames.presentKey(b))
    g.rename(presentValue, wholeModelNames.presentValue(b))
    g.output(wholeModelNames.presentKey(b), 'float32', ['B', Hkv, 'S', D])
    g.output(wholeModelNames.presentValue(b), 'float32', ['B', Hkv, 'S', D])
    const afterAttn = g.op('Add', [x, linear(attn, w.o, H * D, C)]) // (B,T,C)
    const gateUp = linear(rmsNorm(afterAttn, w.postNorm), concatRows([w.gate, w.up]), C, 2 * F)
    const [gate, up] = g.opN('Split', [gateUp, g.ints([F, F])], 2, { axis: -1 }) as [string, string]
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]) // (B,T,F) silu(gate) * up
    x = g.op('Add', [afterAttn, linear(act, w.down, F, C)])
  })
  g.rename(linear(rmsNorm(x, client.finalNorm), client.lmHead, C, V), wholeModelNames.logits)
  g.output(wholeModelNames.logits, 'float32', ['B', 'T', V])
  return g.build('llama_whole_model')
}

/** W (rows, cols) -> W^T (cols, rows) */
function transposed (w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c] as number
  }
  return t
}
