import { describe, expect, it } from 'vitest'
import { branchCandidates, branchRows, childrenOf, pickBranches } from '../../client/decoding/token-branches.js'
import { runLayout } from '../../model/token-tree.js'

const alt = (token: number, confidence: number): { token: number, confidence: number } => ({ token, confidence })

describe('tree speculation: picking branches and laying out their rows', () => {
  it('scores a runner-up by the chance to reach its row times its own chance', () => {
    const drafts = [
      { confidence: 0.5, alternatives: [alt(7, 0.3)] }, // row 1 (row 0 is the decided token)
      { confidence: 0.9, alternatives: [alt(8, 0.05)] } // row 2, reached with 0.5 * 0.5 * 2 (scale 2 caps at 1)
    ]
    const c = branchCandidates(drafts, 1, 0.5, 2)
    expect(c).toEqual([{ row: 1, token: 7, score: 0.5 * 0.3 }, { row: 2, token: 8, score: 0.5 * 1 * 0.05 }])
  })

  it('gives the next run\'s first draft candidates here, and none to a draft in row 0', () => {
    const d = { confidence: 0.5, alternatives: [alt(3, 0.2)] }
    const c = branchCandidates([d, d], 0, 1, 1, d)
    expect(c.map(x => x.row)).toEqual([1, 2]) // row 0 skipped; row 2 is the next run's first draft
    expect(c.map(x => x.score)).toEqual([0.5 * 0.2, 0.5 * 0.5 * 0.2])
  })

  it('keeps the best candidates above the bar', () => {
    const c = [{ row: 1, token: 1, score: 0.1 }, { row: 2, token: 2, score: 0.3 }, { row: 3, token: 3, score: 0.01 }]
    expect(pickBranches(c, 2, 0.05).map(x => x.token)).toEqual([2, 1])
    expect(pickBranches(c, 5, 0.2).map(x => x.token)).toEqual([2])
  })

  it('lays branch rows out as siblings of the rows they replace, continuations chained, cut at the end', () => {
    // trunk of 4 rows at 10..13; branch A replaces row 2 (position 12), B row 4 (position 14: the next run's)
    // end 16: rows may sit at positions up to 15, so B keeps one continuation token of two
    const rows = branchRows([{ row: 2, token: 50, score: 1 }, { row: 4, token: 60, score: 1 }], [[51, 52], [61, 62]], 10, 4, 16)
    expect(rows.tokens).toEqual([50, 51, 52, 60, 61])
    expect(rows.parents).toEqual([1, 4, 5, 3, 7])
    const layout = runLayout(10, 9, [-1, 0, 1, 2, ...rows.parents])
    expect(layout.positions).toEqual([10, 11, 12, 13, 12, 13, 14, 14, 15])
    expect(childrenOf([-1, 0, 1, 2, ...rows.parents], 4)).toEqual(new Map([[1, [4]], [4, [5]], [5, [6]], [3, [7]], [7, [8]]]))
  })
})
