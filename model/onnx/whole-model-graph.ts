import type { LlamaConfig } from '../config.js'
import type { BlockWeights, ClientWeights } from '../weights.js'
import { GraphBuilder } from './graph-builder.js'
import { emitBatchTime, emitLinear } from './linear.js'
import { BLOCK_OPSET, emitLlamaBlock, emitRmsNorm, emitRotary } from './llama-block.js'
import { spanNames } from './span-graph.js'

/** Graph input/output names of a whole model: a span's (span-graph.ts), with token ids in and logits out. */
export const wholeModelNames = {
  ids: 'input_ids',
  positions: spanNames.positions,
  mask: spanNames.mask,
  logits: 'logits',
  pastKey: spanNames.pastKey,
  pastValue: spanNames.pastValue,
  newKey: spanNames.newKey,
  newValue: spanNames.newValue
} as const

/**
 * A whole small model as one ONNX graph, for a draft run on the client:
 *   input_ids (B,T) int64, position_ids (B,T) int64, attention_mask (T,P+T) bool,
 *   past_key_i/past_value_i (B,P,Hkv,D)
 *   -> logits (B,T,V), new_key_i/new_value_i (B,T,Hkv,D)
 *
 * The blocks are a span graph's; the embedding and head join them in the same session,
 * because a tiny draft's step costs what ORT spends per session run and per node.
 */
export function buildWholeModelGraph (cfg: LlamaConfig, blocks: readonly BlockWeights[], client: ClientWeights): Uint8Array {
  const { hiddenSize: C, numKvHeads: Hkv, headDim: D, vocabSize: V } = cfg
  const g = new GraphBuilder({ opset: BLOCK_OPSET })
  const ids = g.input(wholeModelNames.ids, 'int64', ['B', 'T'])
  const positions = g.input(wholeModelNames.positions, 'int64', ['B', 'T'])
  const ctx = emitRotary(g, cfg, positions, g.input(wholeModelNames.mask, 'bool', ['T', 'S']))
  let hidden = g.op('Gather', [g.floats('embedding', client.embedding, [V, C]), ids], { axis: 0 }) // (B,T,C)
  blocks.forEach((w, b) => {
    const pastKey = g.input(wholeModelNames.pastKey(b), 'float32', ['B', 'P', Hkv, D])
    const pastValue = g.input(wholeModelNames.pastValue(b), 'float32', ['B', 'P', Hkv, D])
    const out = emitLlamaBlock(g, cfg, w, ctx, { hidden, pastKey, pastValue })
    g.rename(out.newKey, wholeModelNames.newKey(b))
    g.rename(out.newValue, wholeModelNames.newValue(b))
    g.output(wholeModelNames.newKey(b), 'float32', ['B', 'T', Hkv, D])
    g.output(wholeModelNames.newValue(b), 'float32', ['B', 'T', Hkv, D])
    hidden = out.hidden
  })
  const norm = emitRmsNorm(g, hidden, client.finalNorm, cfg.rmsNormEps)
  g.rename(emitLinear(g, norm, emitBatchTime(g, hidden), g.floats('lm_head', client.lmHead, [V, C]), C, V), wholeModelNames.logits)
  g.output(wholeModelNames.logits, 'float32', ['B', 'T', V])
  return g.build('llama_whole_model')
}
