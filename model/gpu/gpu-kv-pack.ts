import type { LlamaConfig } from '../config.js'
import { GraphBuilder } from '../onnx/graph-builder.js'

/**
 * Packing several sessions' device caches for one run of the span graph, and unpacking the
 * result: a packed run is the one-session graph over every session's past side by side, with
 * a mask that keeps each session's rows to its own columns (the same graph, so the weights are
 * on the device once). These graphs hold no weights and run on the device.
 */
export const kvPackNames = {
  pastKey: (block: number, slot: number) => `past_key_${block}_${slot}`,
  pastValue: (block: number, slot: number) => `past_value_${block}_${slot}`,
  packedKey: (block: number) => `packed_key_${block}`,
  packedValue: (block: number) => `packed_value_${block}`,
  columns: (slot: number) => `columns_${slot}`,
  presentKey: (block: number, slot: number) => `present_key_${block}_${slot}`,
  presentValue: (block: number, slot: number) => `present_value_${block}_${slot}`
} as const

/**
 * n sessions' pasts of blocks [start, end), side by side:
 *   past_key_i_s (1,Hkv,D,P_s), past_value_i_s (1,Hkv,P_s,D)
 *   -> packed_key_i (1,Hkv,D,P), packed_value_i (1,Hkv,P,D), P = the sum of P_s
 * Whole tensors (rows past a session's length included): the mask hides those.
 */
export function buildKvPackGraph (cfg: LlamaConfig, start: number, end: number, n: number): Uint8Array {
  const { numKvHeads: Hkv, headDim: D } = cfg
  const names = kvPackNames
  const g = new GraphBuilder()
  const slots = Array.from({ length: n }, (_, s) => s)
  for (let b = start; b < end; b++) {
    const keys = slots.map(s => g.input(names.pastKey(b, s), 'float32', [1, Hkv, D, `P${s}`]))
    const values = slots.map(s => g.input(names.pastValue(b, s), 'float32', [1, Hkv, `P${s}`, D]))
    g.rename(g.op('Concat', keys, { axis: 3 }), names.packedKey(b))
    g.rename(g.op('Concat', values, { axis: 2 }), names.packedValue(b))
    g.output(names.packedKey(b), 'float32', [1, Hkv, D, 'P'])
    g.output(names.packedValue(b), 'float32', [1, Hkv, 'P', D])
  }
  return g.build(`kv_pack_${start}_${end}_${n}`)
}

/**
 * A packed run's presents back into each session's cache:
 *   present_key_i (1,Hkv,D,S), present_value_i (1,Hkv,S,D) (the packed pasts, then every new row),
 *   columns_s (S_s) int64: session s's columns in order (its past, then its new rows)
 *   -> present_key_i_s (1,Hkv,D,S_s), present_value_i_s (1,Hkv,S_s,D)
 * One Gather per session and tensor: on the WebGPU EP a kernel's dispatch is the cost.
 */
export function buildKvUnpackGraph (cfg: LlamaConfig, start: number, end: number, n: number): Uint8Array {
  const { numKvHeads: Hkv, headDim: D } = cfg
  const names = kvPackNames
  const g = new GraphBuilder()
  const columns = Array.from({ length: n }, (_, s) => g.input(names.columns(s), 'int64', [`S${s}`]))
  for (let b = start; b < end; b++) {
    const key = g.input(names.packedKey(b), 'float32', [1, Hkv, D, 'S'])
    const value = g.input(names.packedValue(b), 'float32', [1, Hkv, 'S', D])
    for (const [s, cols] of columns.entries()) {
      g.rename(g.op('Gather', [key, cols], { axis: 3 }), names.presentKey(b, s))
      g.rename(g.op('Gather', [value, cols], { axis: 2 }), names.presentValue(b, s))
      g.output(names.presentKey(b, s), 'float32', [1, Hkv, D, `S${s}`])
      g.output(names.presentValue(b, s), 'float32', [1, Hkv, `S${s}`, D])
    }
  }
  return g.build(`kv_unpack_${start}_${end}_${n}`)
}
