import * as ort from 'onnxruntime-node'
import { visibility, type RunLayout } from '../token-tree.js'

/**
 * The inputs of a GPU span run that are built on the JS side, so that no int64 shape
 * arithmetic (which the WebGPU EP leaves on the CPU) runs between GPU kernels: the rotary
 * tables of the run's rows and the attention mask over the arena's columns.
 */

/** Additive mask value for hidden columns: finite, so no kernel sees an infinity. */
const HIDDEN = -1e30

/** cos/sin (T,D/2) of the rows' positions, in float32 as the CPU graph computes them, and the row index (1,T) of each token. */
export function rotaryInputs (invFreq: Float32Array, positions: readonly number[]): [cos: ort.Tensor, sin: ort.Tensor, rows: ort.Tensor] {
  const half = invFreq.length
  const T = positions.length
  const cos = new Float32Array(T * half)
  const sin = new Float32Array(T * half)
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const f = Math.fround((positions[t] as number) * (invFreq[i] as number))
      cos[t * half + i] = Math.cos(f)
      sin[t * half + i] = Math.sin(f)
    }
  }
  const rows = new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, t) => BigInt(t)), [1, T])
  return [new ort.Tensor('float32', cos, [T, half]), new ort.Tensor('float32', sin, [T, half]), rows]
}

/**
 * (1,1,1,T,S) additive mask, S = `width` past columns + T new rows (every run's, in order):
 * run i's rows see its past columns `pastColumns[i]` and, among its own rows, what
 * model/token-tree.ts lets them see; every other column is HIDDEN.
 */
export function arenaMask (runs: ReadonlyArray<{ readonly layout: RunLayout }>, pastColumns: ReadonlyArray<readonly number[]>, width: number): ort.Tensor {
  const T = runs.reduce((n, r) => n + r.layout.rows, 0)
  const S = width + T
  const m = new Float32Array(T * S).fill(HIDDEN)
  let rowAt = 0
  for (const [i, { layout }] of runs.entries()) {
    const n = layout.rows
    const own = visibility(layout, 0) // (n, n) among the run's rows
    for (let t = 0; t < n; t++) {
      const r = (rowAt + t) * S
      for (const c of pastColumns[i] as readonly number[]) m[r + c] = 0
      for (let j = 0; j < n; j++) if (own[t * n + j] === 1) m[r + width + rowAt + j] = 0
    }
    rowAt += n
  }
  return new ort.Tensor('float32', m, [1, 1, 1, T, S])
}
