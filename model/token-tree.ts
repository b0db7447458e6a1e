/**
 * Runs whose rows form a token tree (tree speculation): one run verifies a chain of draft
 * tokens (the trunk) and alternative branches hanging off it, in one pass.
 *
 * `parents[i]` is the row that row i continues, or -1 for the last position already cached
 * (start - 1). Row i sits one position after its parent and attends to the cached past plus
 * its ancestors and itself. The trunk is the longest prefix of rows that form a chain
 * (parents[i] = i - 1): only trunk rows are written to the KV cache, at positions
 * start..start+trunk-1; branch rows are computed and returned but leave nothing behind, so
 * a branch the verifier picks is fed again in the next run (it is cheap: its logits are
 * already known). Without parents a run is all trunk: the ordinary causal chain.
 */

import { ShapeError } from './errors.js'

/** Options of one forward pass of a span runner. */
export interface ForwardOptions {
  /** Aborts between ORT sessions. */
  signal?: AbortSignal
  /** The rows form a token tree: parents[i] is row i's parent row or -1. */
  parents?: readonly number[]
}

/** Positions, trunk length and visibility of one run's rows. */
export interface RunLayout {
  /** T rows */
  readonly rows: number
  /** Absolute position of each row, for rotary embeddings. */
  readonly positions: readonly number[]
  /** Rows [0, trunk) are written to the cache. */
  readonly trunk: number
  /** Row i sees run row j (j <= i) when ancestorOf(j, i); always sees the whole cached past. */
  readonly parents: readonly number[] | undefined
}

/** Most rows of one run that may be branches; trees are small, and masks are (T, S). */
export const MAX_TREE_ROWS = 1024

/** Why `parents` cannot describe a tree of T rows, or undefined when it can. */
export function parentsProblem (parents: readonly number[], T: number): string | undefined {
  if (parents.length !== T) return `it has ${parents.length} entries for ${T} rows`
  if (T > MAX_TREE_ROWS) return `a tree run may have at most ${MAX_TREE_ROWS} rows, got ${T}`
  for (const [i, p] of parents.entries()) {
    if (!Number.isInteger(p) || p < -1 || p >= i) return `parents[${i}] = ${p}: a row's parent must be an earlier row or -1`
  }
  return undefined
}

/** The layout of T rows starting at position `start`; throws ShapeError for a malformed tree. */
export function runLayout (start: number, T: number, parents?: readonly number[]): RunLayout {
  if (parents === undefined) {
    return { rows: T, positions: Array.from({ length: T }, (_, t) => start + t), trunk: T, parents: undefined }
  }
  const problem = parentsProblem(parents, T)
  if (problem !== undefined) throw new ShapeError(`Invalid token tree: ${problem}`)
  const positions = parents.map(() => 0)
  for (const [i, p] of parents.entries()) positions[i] = p < 0 ? start : (positions[p] as number) + 1
  let trunk = 0
  while (trunk < T && parents[trunk] === trunk - 1) trunk++
  return { rows: T, positions, trunk, parents: trunk === T ? undefined : parents }
}

/**
 * (T, past + T) visibility, row-major, 1 where row t may attend to slot s: slots [0, past)
 * are the cache, slot past + j is run row j.
 */
export function visibility (layout: RunLayout, past: number): Uint8Array {
  const T = layout.rows
  const S = past + T
  const m = new Uint8Array(T * S)
  for (let t = 0; t < T; t++) {
    m.fill(1, t * S, t * S + past)
    if (layout.parents === undefined) {
      m.fill(1, t * S + past, t * S + past + t + 1)
    } else {
      for (let j = t; j >= 0; j = layout.parents[j] as number) m[t * S + past + j] = 1
    }
  }
  return m
}

/** Row i's ancestors and itself, root first (rows of the run). */
export function pathTo (parents: readonly number[], row: number): number[] {
  const path: number[] = []
  for (let j = row; j >= 0; j = parents[j] as number) path.push(j)
  return path.reverse()
}
