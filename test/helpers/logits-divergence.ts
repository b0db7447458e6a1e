import { argmax } from '../../client/sampling/index.js'

/**
 * How far logits `q` stray from `p`, position by position (rows (V,) each): the mean
 * KL(softmax p || softmax q) in nats, and the share of positions whose argmax agrees.
 * Quantized weights against float32 (tests and bench:local).
 */
export function logitsDivergence (p: readonly Float32Array[], q: readonly Float32Array[]): { kl: number, agree: number } {
  let kl = 0
  let agree = 0
  for (const [t, row] of p.entries()) {
    const other = q[t] as Float32Array
    const [lp, lq] = [logSoftmax(row), logSoftmax(other)]
    for (let v = 0; v < lp.length; v++) kl += Math.exp(lp[v] as number) * ((lp[v] as number) - (lq[v] as number))
    if (argmax(row) === argmax(other)) agree++
  }
  return { kl: kl / p.length, agree: agree / p.length }
}

function logSoftmax (row: Float32Array): Float64Array {
  let max = -Infinity
  for (const v of row) max = Math.max(max, v)
  let sum = 0
  for (const v of row) sum += Math.exp(v - max)
  const lse = max + Math.log(sum)
  return Float64Array.from(row, v => v - lse)
}
