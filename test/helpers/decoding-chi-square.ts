/** Pearson's chi-square test of observed counts against a distribution. */
export interface ChiSquare {
  statistic: number
  df: number
  /** The statistic's 99.9% quantile under the null (Wilson-Hilferty approximation). */
  critical: number
  /** Whether the counts are implausible under `probs` at the 0.1% level. */
  rejected: boolean
}

/**
 * counts (V,) drawn from probs (V,): tokens whose expected count is under 5 are merged into
 * one bin (dropped if that bin expects under 5 too).
 */
export function chiSquare (counts: ArrayLike<number>, probs: ArrayLike<number>): ChiSquare {
  let n = 0
  for (let i = 0; i < counts.length; i++) n += counts[i] as number
  const bins: Array<[observed: number, expected: number]> = []
  let rareObserved = 0
  let rareExpected = 0
  for (let i = 0; i < probs.length; i++) {
    const e = n * (probs[i] as number)
    const o = counts[i] as number
    if (e >= 5) bins.push([o, e])
    else {
      rareObserved += o
      rareExpected += e
    }
  }
  if (rareExpected >= 5) bins.push([rareObserved, rareExpected])
  else if (bins.length > 0) {
    const last = bins[bins.length - 1] as [number, number]
    last[0] += rareObserved
    last[1] += rareExpected
  }
  const statistic = bins.reduce((s, [o, e]) => s + (o - e) ** 2 / e, 0)
  const df = bins.length - 1
  const z = 3.0902 // standard normal 99.9% quantile
  const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3
  return { statistic, df, critical, rejected: statistic > critical }
}
