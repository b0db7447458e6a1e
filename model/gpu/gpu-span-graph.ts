import type { LlamaConfig } from '../config.js'
import type { BlockWeights } from '../weights.js'
import { GraphBuilder } from '../onnx/graph-builder.js'
import type { Quantization } from '../quantize.js'
import { emitGpuLlamaBlock } from './gpu-llama-block.js'

/** Graph input/output names of a GPU span; index by absolute block number. */
export const gpuSpanNames = {
  hidden: 'hidden',
  cos: 'rope_cos',
  sin: 'rope_sin',
  rows: 'rope_rows',
  mask: 'attn_mask',
  pastLen: 'past_len',
  hiddenOut: 'hidden_out',
  pastKey: (block: number) => `past_key_${block}`,
  pastValue: (block: number) => `past_value_${block}`,
  presentKey: (block: number) => `present_key_${block}`,
  presentValue: (block: number) => `present_value_${block}`
} as const

/**
 * ONNX model for blocks [start, end), batch 1, meant to keep its cache on the GPU:
 *   hidden (1,T,C), rope_cos/rope_sin (T,D/2), rope_rows (1,T) int64 0..T-1, attn_mask (1,1,1,T,S), past_len (1) int64,
 *   past_key_i (1,Hkv,D,P'), past_value_i (1,Hkv,P',D) with P' >= past_len
 *   -> hidden_out (1,T,C), present_key_i (1,Hkv,D,S), present_value_i (1,Hkv,S,D), S = past_len + T
 * The presents are fed back as the next run's pasts without leaving the device. With `int8` or
 * `int4` the linear layers run as MatMulNBits over weights quantized here (model/quantize.ts).
 */
export function buildGpuSpanGraph (cfg: LlamaConfig, start: number, weights: readonly BlockWeights[], quantization: Quantization = 'none'): Uint8Array {
  const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = cfg
  const n = gpuSpanNames
  const g = new GraphBuilder()
  let hidden = g.input(n.hidden, 'float32', [1, 'T', C])
  const ctx = {
    cos: g.input(n.cos, 'float32', ['T', D / 2]),
    sin: g.input(n.sin, 'float32', ['T', D / 2]),
    rows: g.input(n.rows, 'int64', [1, 'T']),
    mask: g.input(n.mask, 'float32', [1, 1, 1, 'T', 'S']),
    pastLen: g.input(n.pastLen, 'int64', [1])
  }
  weights.forEach((w, i) => {
    const block = start + i
    const pastKey = g.input(n.pastKey(block), 'float32', [1, Hkv, D, 'P'])
    const pastValue = g.input(n.pastValue(block), 'float32', [1, Hkv, 'P', D])
    const out = emitGpuLlamaBlock(g, cfg, w, ctx, { hidden, pastKey, pastValue }, quantization)
    g.rename(out.presentKey, n.presentKey(block))
    g.rename(out.presentValue, n.presentValue(block))
    g.output(n.presentKey(block), 'float32', [1, Hkv, D, 'S'])
    g.output(n.presentValue(block), 'float32', [1, Hkv, 'S', D])
    hidden = out.hidden
  })
  g.rename(hidden, n.hiddenOut)
  g.output(n.hiddenOut, 'float32', [1, 'T', C])
  return g.build(`llama_gpu_blocks_${start}_${start + weights.length}`)
}
