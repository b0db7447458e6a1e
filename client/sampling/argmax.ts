/** A row of logits or probabilities over the vocabulary: (V,). */
export type VocabRow = Float32Array | Float64Array | readonly number[]

/**
 * Index of the largest value of a row; the first one on ties, NaN never wins.
 * Throws a RangeError for an empty row.
 *
 * row (V,) -> index in [0, V)
 */
export function argmax (row: VocabRow): number {
  if (row.length === 0) throw new RangeError('Cannot take argmax of an empty row: vocabulary size is 0')
  let best = 0
  let bestValue = -Infinity
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number
    if (v > bestValue) {
      bestValue = v
      best = i
    }
  }
  return best
}
