import type { LlamaConfig } from '../config.js'
import type { BlockWeights, ClientWeights } from '../weights.js'
import { GraphBuilder } from './graph-builder.js'
import { BLOCK_OPSET, emitLlamaBlock, emitRotary } from './llama-block.js'
import { emitBatchTime, emitLinear } from './linear.js'

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
export function buildSpanGraph (cfg: LlamaConfig, start: number, weights: readonly BlockWeights[]): Uint8Array {
  const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = cfg
  const g = new GraphBuilder({ opset: BLOCK_OPSET })
  let hidden = g.input(spanNames.hidden, 'float32', ['B', 'T', C])
  const positions = g.input(spanNames.positions, 'int64', ['B', 'T'])
  const ctx = emitRotary(g, cfg, positions, g.input(spanNames.mask, 'bool', ['T', 'S']))
  weights.forEach((w, i) => {
    const block = start + i
    const pastKey = g.input(spanNames.pastKey(block), 'float32', ['B', 'P', Hkv, D])
    const pastValue = g.input(spanNames.pastValue(block), 'float32', ['B', 'P', Hkv, D])
    const out = emitLlamaBlock(g, cfg, w, ctx, { hidden, pastKey, pastValue })
    g.rename(out.newKey, spanNames.newKey(block))
    g.rename(out.newValue, spanNames.newValue(block))
    g.output(spanNames.newKey(block), 'float32', ['B', 'T', Hkv, D])
    g.output(spanNames.newValue(block), 'float32', ['B', 'T', Hkv, D])
    hidden = out.hidden
  })
  g.rename(hidden, spanNames.hiddenOut)
  g.output(spanNames.hiddenOut, 'float32', ['B', 'T', C])
  return g.build(`llama_blocks_${start}_${start + weights.length}`)
}

/** Final RMSNorm and LM head: hidden (B,T,C) -> logits (B,T,V). */
export function buildHeadGraph (cfg: LlamaConfig, w: Pick<ClientWeights, 'finalNorm' | 'lmHead'>): Uint8Array {
  const { hiddenSize: C, vocabSize: V } = cfg
  const g = new GraphBuilder()
  const hidden = g.input('hidden', 'float32', ['B', 'T', C])
  const norm = g.op('SimplifiedLayerNormalization', [hidden, g.floats('norm_w', w.finalNorm, [C])], { axis: -1, epsilon: { float: cfg.rmsNormEps }, stash_type: 1 })
  const logits = emitLinear(g, norm, emitBatchTime(g, hidden), g.floats('lm_head', w.lmHead, [V, C]), C, V)
  g.rename(logits, 'logits')
  g.output('logits', 'float32', ['B', 'T', V])
  return g.build('llama_head')
}
