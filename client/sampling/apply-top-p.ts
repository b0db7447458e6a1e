/**
 * Top-p (nucleus) filter in place, as Hugging Face's TopPLogitsWarper: walking tokens from the least
 * likely up, drop each while the cumulative mass stays <= 1 - topP; never the most likely one.
 * The result is renormalized. Among equal probabilities at the boundary, higher indices go first.
 *
 * Expected O(V): no full sort. Tokens with p < (1 - topP) / V are dropped at once (everything at
 * or below them in the order sums to at most V * (1 - topP) / V); the boundary among the rest is
 * found by quickselect on probability mass.
 *
 * probs (V,) summing to 1 -> probs (V,) with the tail zeroed, summing to 1
 */
export function applyTopP (probs: Float64Array, topP: number): void {
  const V = probs.length
  const budget = 1 - topP // mass that may be dropped
  const floor = budget / V
  let dropped = 0 // mass dropped so far (sum of values below `lo` in the order)
  const vals = new Float64Array(V) // (n,) candidate values, partitioned in place below
  let n = 0
  for (let i = 0; i < V; i++) {
    const p = probs[i] as number
    if (p < floor) dropped += p
    else vals[n++] = p
  }

  // Invariant: vals[0, lo) <= vals[lo, hi) <= vals[hi, n); vals[0, lo) are all dropped.
  let lo = 0
  let hi = n
  let removed = 0 // candidates dropped, in ascending order
  let boundary = Infinity // smallest kept value
  while (lo < hi) {
    const pivot = vals[(lo + hi) >> 1] as number
    // 3-way partition of [lo, hi): < pivot | == pivot | > pivot
    let lt = lo
    let gt = hi
    let i = lo
    while (i < gt) {
      const v = vals[i] as number
      if (v < pivot) swap(vals, lt++, i++)
      else if (v > pivot) swap(vals, i, --gt)
      else i++
    }
    let lessMass = 0
    for (let j = lo; j < lt; j++) lessMass += vals[j] as number
    if (dropped + lessMass > budget) {
      hi = lt // the boundary is among the smaller values
      continue
    }
    dropped += lessMass
    removed += lt - lo
    // Equal values: drop as many as still fit, but always keep one candidate in all.
    const equal = gt - lt
    const fit = Math.min(equal, Math.max(0, Math.floor((budget - dropped) / pivot + 1e-9)), n - 1 - removed)
    if (fit < equal) {
      removed += fit
      boundary = pivot
      break
    }
    dropped += equal * pivot
    removed += equal
    lo = gt
  }
  if (boundary === Infinity) {
    // Only reachable through rounding: the range ran out; the boundary is the smallest value above it.
    for (let j = lo; j < n; j++) boundary = Math.min(boundary, vals[j] as number)
  }

  let below = 0
  for (let i = 0; i < V; i++) if ((probs[i] as number) < boundary) below++
  let tiesToDrop = removed + (V - n) - below
  let sum = 0
  for (let i = V - 1; i >= 0; i--) {
    const p = probs[i] as number
    if (p < boundary) probs[i] = 0
    else if (p === boundary && tiesToDrop > 0) {
      probs[i] = 0
      tiesToDrop--
    } else sum += p
  }
  for (let i = 0; i < V; i++) probs[i] = (probs[i] as number) / sum
}

function swap (a: Float64Array, i: number, j: number): void {
  const t = a[i] as number
  a[i] = a[j] as number
  a[j] = t
}
