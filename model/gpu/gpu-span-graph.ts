import type { LlamaConfig } from '../config.js'
import type { BlockWeights } from '../weights.js'
import { GraphBuilder } from '../onnx/graph-builder.js'
import { emitGpuLlamaBlock, type AppendKv } from './gpu-llama-block.js'

/** Graph input/output names of a GPU span; index by absolute block number and slot. */
export const gpuSpanNames = {
  hidden: 'hidden',
  cos: 'rope_cos',
  sin: 'rope_sin',
  rows: 'rope_rows',
  mask: 'attn_mask',
  hiddenOut: 'hidden_out',
  pastLen: (slot: number) => `past_len_${slot}`,
  rowStart: (slot: number) => `row_start_${slot}`,
  rowEnd: (slot: number) => `row_end_${slot}`,
  pastKey: (block: number, slot: number) => `past_key_${block}_${slot}`,
  pastValue: (block: number, slot: number) => `past_value_${block}_${slot}`,
  presentKey: (block: number, slot: number) => `present_key_${block}_${slot}`,
  presentValue: (block: number, slot: number) => `present_value_${block}_${slot}`
} as const

/**
 * ONNX model for blocks [start, end), meant to keep its caches on the GPU, over `slots`
 * sequences at once (runs of several sessions in one pass over the weights):
 *   hidden (1,T,C): every slot's rows, slot after slot; rope_cos/rope_sin (T,D/2) of each row's
 *   position; rope_rows (1,T) int64 0..T-1; attn_mask (1,1,1,T,S);
 *   per slot s: past_len_s (1) int64; row_start_s, row_end_s (1) int64, its rows [start, end) of T;
 *   past_key_i_s (1,Hkv,D,P_s'), past_value_i_s (1,Hkv,P_s',D) with P_s' >= past_len_s
 *   -> hidden_out (1,T,C), present_key_i_s (1,Hkv,D,S_s), present_value_i_s (1,Hkv,S_s,D),
 *   S_s = past_len_s + its rows, and S = the sum of S_s: the rows attend over every slot's
 *   presents side by side, and the mask keeps each row to its own slot's columns.
 * The presents are fed back as the slot's next pasts without leaving the device. With one slot
 * the graph has no slicing of rows and no concatenation of slots (the lone-session graph).
 * An unused slot gets an empty past and no rows.
 */
export function buildGpuSpanGraph (cfg: LlamaConfig, start: number, weights: readonly BlockWeights[], slots = 1): Uint8Array {
  const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = cfg
  const n = gpuSpanNames
  const g = new GraphBuilder()
  let hidden = g.input(n.hidden, 'float32', [1, 'T', C])
  const ctx = {
    cos: g.input(n.cos, 'float32', ['T', D / 2]),
    sin: g.input(n.sin, 'float32', ['T', D / 2]),
    rows: g.input(n.rows, 'int64', [1, 'T']),
    mask: g.input(n.mask, 'float32', [1, 1, 1, 'T', 'S'])
  }
  const slotIds = Array.from({ length: slots }, (_, s) => s)
  const pastLen = slotIds.map(s => g.input(n.pastLen(s), 'int64', [1]))
  const rowRange = slotIds.map(s => slots === 1 ? undefined : [g.input(n.rowStart(s), 'int64', [1]), g.input(n.rowEnd(s), 'int64', [1])] as const)
  weights.forEach((w, i) => {
    const block = start + i
    const appendKv: AppendKv = (newKeys, newValues) => {
      const presents = slotIds.map(s => {
        const pastKey = g.input(n.pastKey(block, s), 'float32', [1, Hkv, D, `P${s}`])
        const pastValue = g.input(n.pastValue(block, s), 'float32', [1, Hkv, `P${s}`, D])
        // the past is sliced to past_len (rollback costs nothing); a slot takes its own rows
        const keep = (x: string, axis: number): string => g.op('Slice', [x, g.ints([0]), pastLen[s] as string, g.ints([axis])])
        const range = rowRange[s]
        const own = (x: string, axis: number): string => range === undefined ? x : g.op('Slice', [x, range[0], range[1], g.ints([axis])])
        const key = g.op('Concat', [keep(pastKey, 3), own(newKeys, 3)], { axis: 3 }) // (1,Hkv,D,S_s)
        const value = g.op('Concat', [keep(pastValue, 2), own(newValues, 2)], { axis: 2 }) // (1,Hkv,S_s,D)
        g.rename(key, n.presentKey(block, s))
        g.rename(value, n.presentValue(block, s))
        g.output(n.presentKey(block, s), 'float32', [1, Hkv, D, `S${s}`])
        g.output(n.presentValue(block, s), 'float32', [1, Hkv, `S${s}`, D])
        return { key: n.presentKey(block, s), value: n.presentValue(block, s) }
      })
      if (slots === 1) return { keys: presents[0]?.key as string, values: presents[0]?.value as string }
      return {
        keys: g.op('Concat', presents.map(p => p.key), { axis: 3 }),
        values: g.op('Concat', presents.map(p => p.value), { axis: 2 })
      }
    }
    hidden = emitGpuLlamaBlock(g, cfg, w, ctx, hidden, appendKv)
  })
  g.rename(hidden, n.hiddenOut)
  g.output(n.hiddenOut, 'float32', [1, 'T', C])
  return g.build(`llama_gpu_blocks_${start}_${start + weights.length}_slots_${slots}`)
}
