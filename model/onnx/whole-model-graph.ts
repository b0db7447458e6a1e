import type { LlamaConfig } from '../config.js'
import type { BlockWeights, ClientWeights } from '../weights.js'
import { GraphBuilder } from './graph-builder.js'
import { BLOCK_OPSET } from './llama-block.js'
import { emitCachedBlocks, emitLmHead, spanNames } from './span-graph.js'

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
  const { hiddenSize: C, vocabSize: V } = cfg
  const g = new GraphBuilder({ opset: BLOCK_OPSET })
  const ids = g.input(wholeModelNames.ids, 'int64', ['B', 'T'])
  const embedded = g.op('Gather', [g.floats('embedding', client.embedding, [V, C]), ids], { axis: 0 }) // (B,T,C)
  g.rename(emitLmHead(g, cfg, emitCachedBlocks(g, cfg, 0, blocks, embedded), client), wholeModelNames.logits)
  g.output(wholeModelNames.logits, 'float32', ['B', 'T', V])
  return g.build('llama_whole_model')
}
