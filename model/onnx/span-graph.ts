import type { LlamaConfig } from '../config.js'
import type { BlockWeights, ClientWeights } from '../weights.js'
import type { Quantization } from '../quantize.js'
import { GraphBuilder } from './graph-builder.js'
import { BLOCK_OPSET, emitLlamaBlock, emitRmsNorm, emitRotary } from './llama-block.js'
import { emitBatchTime, emitWeightLinear } from './linear.js'

/** Graph input/output names of a span; index by absolute block number. */
export const spanNames = {
  hidden: 'hidden',
  positions: 'position_ids',
  mask: 'attention_mask',
  hiddenOut: 'hidden_out',
  pastKey: (block: number) => `past_key_${block}`,
  pastValue: (block: number) => `past_value_${block}`,
  newKey: (block: number) => `new_key_${block}`,
  newValue: (block: number) => `new_value_${block}`
} as const

/**
 * ONNX model for blocks [start, end):
 *   hidden (B,T,C), position_ids (B,T), attention_mask (T,P+T) bool, past_key_i/past_value_i (B,P,Hkv,D)
 *   -> hidden_out (B,T,C), new_key_i/new_value_i (B,T,Hkv,D)
 * Outputs only the new tokens' keys and values: the caller owns the cache and appends.
 */
export function buildSpanGraph (cfg: LlamaConfig, start: number, weights: readonly BlockWeights[], quantization: Quantization = 'none'): Uint8Array {
  const g = new GraphBuilder({ opset: BLOCK_OPSET })
  const hidden = emitCachedBlocks(g, cfg, start, weights, g.input(spanNames.hidden, 'float32', ['B', 'T', cfg.hiddenSize]), quantization)
  g.rename(hidden, spanNames.hiddenOut)
  g.output(spanNames.hiddenOut, 'float32', ['B', 'T', cfg.hiddenSize])
  return g.build(`llama_blocks_${start}_${start + weights.length}`)
}

/**
 * Blocks [start, start + weights.length) applied to `hidden` (B,T,C), with the position, mask
 * and cache inputs and the new key/value outputs named as `spanNames` says; returns the last
 * block's hidden (B,T,C).
 */
export function emitCachedBlocks (g: GraphBuilder, cfg: LlamaConfig, start: number, weights: readonly BlockWeights[], hidden: string, quantization: Quantization = 'none'): string {
  const { numKvHeads: Hkv, headDim: D } = cfg
  const positions = g.input(spanNames.positions, 'int64', ['B', 'T'])
  const ctx = emitRotary(g, cfg, positions, g.input(spanNames.mask, 'bool', ['T', 'S']))
  let x = hidden
  weights.forEach((w, i) => {
    const block = start + i
    const pastKey = g.input(spanNames.pastKey(block), 'float32', ['B', 'P', Hkv, D])
    const pastValue = g.input(spanNames.pastValue(block), 'float32', ['B', 'P', Hkv, D])
    const out = emitLlamaBlock(g, cfg, w, ctx, { hidden: x, pastKey, pastValue }, quantization)
    g.rename(out.newKey, spanNames.newKey(block))
    g.rename(out.newValue, spanNames.newValue(block))
    g.output(spanNames.newKey(block), 'float32', ['B', 'T', Hkv, D])
    g.output(spanNames.newValue(block), 'float32', ['B', 'T', Hkv, D])
    x = out.hidden
  })
  return x
}

/** Final RMSNorm and LM head (float32, or quantized: `int8`): hidden (B,T,C) -> logits (B,T,V). */
export function buildHeadGraph (cfg: LlamaConfig, w: Pick<ClientWeights, 'finalNorm' | 'lmHead'>, quantization: Quantization = 'none'): Uint8Array {
  const g = new GraphBuilder()
  g.rename(emitLmHead(g, cfg, g.input('hidden', 'float32', ['B', 'T', cfg.hiddenSize]), w, quantization), 'logits')
  g.output('logits', 'float32', ['B', 'T', cfg.vocabSize])
  return g.build('llama_head')
}

/** hidden (B,T,C) -> logits (B,T,V): the final RMSNorm, then the LM head. */
export function emitLmHead (g: GraphBuilder, cfg: LlamaConfig, hidden: string, w: Pick<ClientWeights, 'finalNorm' | 'lmHead'>, quantization: Quantization = 'none'): string {
  const { hiddenSize: C, vocabSize: V } = cfg
  return emitWeightLinear(g, emitRmsNorm(g, hidden, w.finalNorm, cfg.rmsNormEps), emitBatchTime(g, hidden), 'lm_head', w.lmHead, C, V, quantization)
}
