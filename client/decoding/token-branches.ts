/**
 * Tree speculation, the pure parts: which runner-up tokens get a branch in a run, and the
 * rows that carry them (model/token-tree.ts explains what the servers do with the rows).
 */
import type { Alternative } from './drafter.js'

/** A runner-up token that may get a branch: it would replace the trunk draft in run row `row`. */
export interface BranchCandidate {
  readonly row: number
  readonly token: number
  /** Chance to be the target's choice: reaching the row times the drafter's belief in the token. */
  readonly score: number
}

/** A trunk draft as branch picking sees it. */
export interface TrunkDraft {
  readonly confidence: number
  readonly alternatives?: readonly Alternative[]
}

/**
 * Candidates beside trunk drafts in rows firstDraft.. (`reach`: the chance that the trunk
 * gets to the first of them; `scale`: the calibration of confidences into acceptance chances).
 * `next`, the draft that will open the next run, gets candidates in row firstDraft + drafts:
 * this run's last row judges it. A draft in row 0 gets none: the previous run judges it.
 */
export function branchCandidates (drafts: readonly TrunkDraft[], firstDraft: number, reach: number, scale: number, next?: TrunkDraft): BranchCandidate[] {
  const out: BranchCandidate[] = []
  let survival = reach
  for (const [j, d] of [...drafts, ...(next !== undefined ? [next] : [])].entries()) {
    const row = firstDraft + j
    if (row > 0) for (const alt of d.alternatives ?? []) out.push({ row, token: alt.token, score: survival * alt.confidence })
    survival *= Math.min(1, d.confidence * scale)
  }
  return out
}

/** The `count` best candidates whose score is at least `minScore`, best first. */
export function pickBranches (candidates: readonly BranchCandidate[], count: number, minScore: number): BranchCandidate[] {
  return candidates.filter(c => c.score >= minScore).sort((a, b) => b.score - a.score).slice(0, count)
}

/** Branch rows to append after a run's trunk: tokens and parents (run rows). */
export interface BranchRows {
  readonly tokens: number[]
  readonly parents: number[]
}

/**
 * Rows for `picked` branches after a trunk of `trunk` rows at `start`: each branch's token as
 * a sibling of the trunk row it replaces, then its continuation as a chain, cut where rows
 * would sit at or past `end` (the row at position p decides p + 1: past end - 1 nothing is needed).
 */
export function branchRows (picked: readonly BranchCandidate[], continuations: readonly (readonly number[])[], start: number, trunk: number, end: number): BranchRows {
  const out: BranchRows = { tokens: [], parents: [] }
  for (const [b, c] of picked.entries()) {
    out.tokens.push(c.token)
    out.parents.push(c.row - 1)
    const room = Math.max(0, end - 1 - (start + c.row))
    for (const token of (continuations[b] ?? []).slice(0, room)) {
      out.parents.push(trunk + out.tokens.length - 1)
      out.tokens.push(token)
    }
  }
  return out
}

/** Branch rows (index >= trunk) by their parent row. */
export function childrenOf (parents: readonly number[], trunk: number): Map<number, number[]> {
  const children = new Map<number, number[]>()
  for (let r = trunk; r < parents.length; r++) {
    const p = parents[r] as number
    children.set(p, [...(children.get(p) ?? []), r])
  }
  return children
}
