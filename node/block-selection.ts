/** A server already in the swarm, as block selection sees it. */
export interface ServedSpan {
  readonly start: number
  readonly end: number
  /** Its speed through one block, blocks/s (any consistent unit works). */
  readonly throughput: number
}

/** Summed throughput of every block [0, numBlocks). */
export function blockThroughputs (numBlocks: number, spans: readonly ServedSpan[]): number[] {
  const t = new Array<number>(numBlocks).fill(0)
  for (const s of spans) for (let b = Math.max(0, s.start); b < Math.min(numBlocks, s.end); b++) t[b] = (t[b] as number) + s.throughput
  return t
}

/**
 * The window of `numBlocks` consecutive blocks that the swarm serves worst, as Petals
 * chooses: compare windows by their per-block throughputs sorted ascending, and take the
 * smallest (lexicographically), so a new server first fills uncovered blocks, then the
 * weakest ones. Ties go to the lowest start.
 */
export function chooseBestSpan (totalBlocks: number, numBlocks: number, spans: readonly ServedSpan[]): { start: number, end: number } {
  if (!(Number.isInteger(numBlocks) && numBlocks >= 1)) throw new RangeError(`Cannot choose ${numBlocks} blocks: must be a positive integer`)
  const n = Math.min(numBlocks, totalBlocks)
  const t = blockThroughputs(totalBlocks, spans)
  let best = 0
  let bestKey: number[] | undefined
  for (let s = 0; s + n <= totalBlocks; s++) {
    const key = t.slice(s, s + n).sort((a, b) => a - b)
    if (bestKey === undefined || compare(key, bestKey) < 0) {
      best = s
      bestKey = key
    }
  }
  return { start: best, end: best + n }
}

function compare (a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d
  }
  return 0
}

/**
 * Where a server that already serves `self` should move to, or undefined to stay. It
 * moves to the window the swarm without it serves worst, and only when that lifts the
 * swarm's slowest block (its bottleneck throughput) by at least `minGain` times: a
 * block nobody else holds stays held, and small gains do not make servers flap. Each move
 * raises the bottleneck, so servers that check one at a time settle.
 */
export function chooseMove (totalBlocks: number, self: ServedSpan, others: readonly ServedSpan[], minGain: number): { start: number, end: number } | undefined {
  if (!(minGain >= 1)) throw new RangeError(`Cannot rebalance with a minimum gain of ${minGain}: must be >= 1`)
  const best = chooseBestSpan(totalBlocks, self.end - self.start, others)
  if (best.start === self.start) return undefined
  const before = bottleneck(blockThroughputs(totalBlocks, [...others, self]))
  const after = bottleneck(blockThroughputs(totalBlocks, [...others, { ...best, throughput: self.throughput }]))
  return after > before && after >= before * minGain ? best : undefined
}

/** The swarm's speed through the whole model is its slowest block's. */
function bottleneck (throughputs: readonly number[]): number {
  return Math.min(...throughputs)
}
