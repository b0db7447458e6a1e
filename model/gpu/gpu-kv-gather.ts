import type { LlamaConfig } from '../config.js'
import { GraphBuilder } from '../onnx/graph-builder.js'

/** Input/output names of the gather graph; index by absolute block number and source. */
export const kvGatherNames = {
  sourceKey: (block: number, source: number) => `source_key_${block}_${source}`,
  sourceValue: (block: number, source: number) => `source_value_${block}_${source}`,
  columns: (source: number) => `columns_${source}`,
  key: (block: number) => `key_${block}`,
  value: (block: number) => `value_${block}`
} as const

/**
 * Columns of n caches' arenas side by side in new tensors, for a run of the span graph over
 * several caches that live in different arenas, or to leave an arena's rolled-back columns
 * behind (model/gpu/gpu-span-cache.ts). Holds no weights; runs on the device:
 *   source_key_i_s (1,Hkv,D,W_s), source_value_i_s (1,Hkv,W_s,D), columns_s (N_s) int64
 *   -> key_i (1,Hkv,D,N), value_i (1,Hkv,N,D), N = the sum of N_s
 * One Gather per source and tensor (and one Concat): on the WebGPU EP a kernel's dispatch is the cost.
 */
export function buildKvGatherGraph (cfg: LlamaConfig, start: number, end: number, n: number): Uint8Array {
  const { numKvHeads: Hkv, headDim: D } = cfg
  const names = kvGatherNames
  const g = new GraphBuilder()
  const sources = Array.from({ length: n }, (_, s) => s)
  const columns = sources.map(s => g.input(names.columns(s), 'int64', [`N${s}`]))
  for (let b = start; b < end; b++) {
    const keys = sources.map(s => g.op('Gather', [g.input(names.sourceKey(b, s), 'float32', [1, Hkv, D, `W${s}`]), columns[s] as string], { axis: 3 }))
    const values = sources.map(s => g.op('Gather', [g.input(names.sourceValue(b, s), 'float32', [1, Hkv, `W${s}`, D]), columns[s] as string], { axis: 2 }))
    g.rename(n === 1 ? keys[0] as string : g.op('Concat', keys, { axis: 3 }), names.key(b))
    g.rename(n === 1 ? values[0] as string : g.op('Concat', values, { axis: 2 }), names.value(b))
    g.output(names.key(b), 'float32', [1, Hkv, D, 'N'])
    g.output(names.value(b), 'float32', [1, Hkv, 'N', D])
  }
  return g.build(`kv_gather_${start}_${end}_${n}`)
}
