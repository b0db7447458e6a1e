import { describe, expect, it } from 'vitest'
import { expectedTokens, planSpeculation, SpeculationController, type SpeculationEstimates } from '../../client/decoding/index.js'

const PIPELINED = { mode: 'pipelined', maxK: 4, maxDepth: 4, maxBranches: 0, branchLength: 0 } as const
const SYNC = { mode: 'sync', maxK: 4, maxDepth: 1, maxBranches: 0, branchLength: 0 } as const

function est (acceptance: number, runMs: number, cycleMs = 1, draftMsPerToken = 0.25): SpeculationEstimates {
  return { acceptance, confidence: 0.5, runMs, draftMsPerToken, cycleMs }
}

describe('planSpeculation', () => {
  it('expected tokens per run: 1 + a + ... + a^k', () => {
    expect(expectedTokens(0, 4)).toBe(1)
    expect(expectedTokens(0.5, 2)).toBeCloseTo(1.75)
    expect(expectedTokens(1, 3)).toBe(4)
  })

  it('pipelined: a good draft over a slow network fills the pipeline', () => {
    expect(planSpeculation(est(0.9, 20), PIPELINED)).toMatchObject({ k: 4, depth: 4 })
  })

  it('pipelined: a poor draft shrinks to one run with one draft (about plain speed)', () => {
    expect(planSpeculation(est(0.05, 20), PIPELINED)).toMatchObject({ k: 1, depth: 1 })
  })

  it('pipelined: a target as fast as the client cycle gets no more than one run in flight', () => {
    expect(planSpeculation(est(0.9, 0.8, 1), PIPELINED).depth).toBe(1)
  })

  it('sync: k grows with acceptance when runs are slow, and stays 1 for a poor draft', () => {
    expect(planSpeculation(est(0.9, 20), SYNC)).toMatchObject({ k: 4, depth: 1 })
    expect(planSpeculation(est(0.05, 20), SYNC)).toMatchObject({ k: 1, depth: 1 })
    // Drafting that costs as much as a run is not worth many tokens.
    expect(planSpeculation(est(0.5, 1, 1, 1), SYNC).k).toBeLessThan(3)
  })

  it('the survival bar follows drafting cost over run time, within bounds', () => {
    expect(planSpeculation(est(0.8, 100, 1, 0.05), PIPELINED).minSurvival).toBe(0.001) // the floor: 0.05 ms of drafting against a 100 ms run
    expect(planSpeculation(est(0.8, 2, 1, 0.5), PIPELINED).minSurvival).toBeCloseTo(0.25)
    const plan = planSpeculation(est(0.8, 10), PIPELINED)
    expect(plan.confidenceScale).toBeCloseTo(0.8 / 0.5)
    expect(plan.cutoff * plan.confidenceScale).toBeCloseTo(plan.minSurvival) // a token under the cutoff fails alone
  })

  it('pipelined: drafting costs only the busy share of the client, sync pays it in full', () => {
    const slowDraft = est(0.8, 80, 20, 4) // 4 ms a draft token against an 80 ms run: bar 0.05
    expect(planSpeculation(slowDraft, PIPELINED).minSurvival).toBeCloseTo(0.05) // busy not measured yet: all of it
    expect(planSpeculation({ ...slowDraft, busy: 1 }, PIPELINED).minSurvival).toBeCloseTo(0.05)
    expect(planSpeculation({ ...slowDraft, busy: 0.2 }, PIPELINED).minSurvival).toBeCloseTo(0.01)
    expect(planSpeculation({ ...slowDraft, busy: 0 }, PIPELINED).minSurvival).toBe(0.001) // the floor
    expect(planSpeculation({ ...slowDraft, busy: 0.2 }, SYNC).minSurvival).toBeCloseTo(0.05) // sync drafts on the critical path
  })
})

describe('planSpeculation: rows that cost server time', () => {
  const SYNC16 = { ...SYNC, maxK: 16 }
  it('sync: when every row adds to the round trip, k is smaller and the bar higher', () => {
    const free = planSpeculation({ ...est(0.8, 35, 1, 0.1), rowMs: 0, meanRows: 10 }, SYNC16)
    const costly = planSpeculation({ ...est(0.8, 35, 1, 0.1), rowMs: 1.5, meanRows: 10 }, SYNC16)
    expect(free.k).toBe(16)
    expect(costly.k).toBeLessThan(free.k)
    // the k that maximizes expected tokens over the round trip at k + 1 rows
    const rate = (k: number): number => expectedTokens(0.8, k) / (35 + 1.5 * (k + 1 - 10) + 0.1 * k)
    for (let k = 1; k <= 16; k++) expect(rate(costly.k)).toBeGreaterThanOrEqual(rate(k))
    expect(costly.minSurvival).toBeCloseTo((0.1 + 1.5) / 35)
    expect(free.minSurvival).toBeCloseTo(0.1 / 35)
  })

  it('pipelined: the row cost raises the bar, so the window of drafts in flight shrinks', () => {
    const free = planSpeculation({ ...est(0.8, 40, 10, 0.1), busy: 0.2 }, PIPELINED)
    const costly = planSpeculation({ ...est(0.8, 40, 10, 0.1), busy: 0.2, rowMs: 4 }, PIPELINED)
    expect(costly.minSurvival).toBeCloseTo((0.2 * 0.1 + 4) / 40)
    expect(costly.k * costly.depth).toBeLessThan(free.k * free.depth)
  })
})

describe('SpeculationController', () => {
  it('fits what a row costs from runs sent alone of different sizes', () => {
    const c = new SpeculationController({ ...SYNC, maxK: 16 })
    for (let i = 0; i < 6; i++) c.observeRun(40, true, 10) // all one size: no slope to see
    expect(c.estimates.rowMs).toBeUndefined()
    for (let i = 0; i < 30; i++) {
      const rows = 5 + (i % 6) * 10
      c.observeRun(30 + 1.5 * rows, true, rows)
      c.observeRun(500, false, rows) // queued behind others: not a measure of the row cost
    }
    expect(c.estimates.rowMs).toBeCloseTo(1.5, 1)
    for (let i = 0; i < 30; i++) {
      const rows = 5 + (i % 6) * 10
      c.observeRun(80 + (i % 2 === 0 ? 1 : -1), true, rows) // a slow network, rows free
    }
    expect(c.estimates.rowMs).toBeLessThan(0.1)
    // jitter that happens to line up with sizes for a while is not taken for a row cost
    for (let i = 0; i < 60; i++) {
      const rows = 5 + ((i * 7) % 11) * 5
      c.observeRun(80 + 3 * Math.sin(i * 1.7) + (rows > 40 ? 1 : 0), true, rows)
    }
    expect(c.estimates.rowMs).toBeLessThan(0.01)
  })

  it('learns from rejections: acceptance falls and so do k and depth', () => {
    const c = new SpeculationController({ ...PIPELINED })
    c.observeRun(20)
    c.observeCycle(1)
    c.observeDrafting(4, 1)
    for (let i = 0; i < 40; i++) c.observeDraft(true, 0.9)
    const good = c.plan()
    for (let i = 0; i < 40; i++) c.observeDraft(false, 0.9)
    const bad = c.plan()
    expect(c.estimates.acceptance).toBeLessThan(0.1)
    expect(good.k * good.depth).toBeGreaterThan(bad.k * bad.depth)
    expect(bad).toMatchObject({ k: 1, depth: 1 })
  })

  it('plans depth from round trips of runs sent alone: queueing behind runs in flight does not deepen it', () => {
    const c = new SpeculationController({ ...PIPELINED })
    c.observeCycle(1)
    c.observeDrafting(4, 0.4)
    for (let i = 0; i < 40; i++) c.observeDraft(true, 0.9)
    c.observeRun(2, true) // a fast target: 2 ms with nothing else in flight
    for (let i = 0; i < 20; i++) c.observeRun(8, false) // runs behind 3 others wait for them
    expect(c.estimates.runMs).toBeCloseTo(2)
    expect(c.plan().depth).toBe(2)
    c.observeRun(40, true) // a slow network: runs sent alone take long too
    expect(c.plan().depth).toBe(4)
  })

  it('measures the busy share from the time spent waiting for results', () => {
    const c = new SpeculationController({ ...PIPELINED })
    expect(c.estimates.busy).toBeUndefined()
    c.observeWaiting(90, 100)
    expect(c.estimates.busy).toBeCloseTo(0.1)
    for (let i = 0; i < 40; i++) c.observeWaiting(0, 10)
    expect(c.estimates.busy).toBeGreaterThan(0.99)
    c.observeWaiting(50, 20) // a wait longer than the interval counts as all of it
    expect(c.estimates.busy).toBeGreaterThanOrEqual(0)
  })

  it('not adaptive: always maxK and maxDepth (1 in sync), every draft sent', () => {
    expect(new SpeculationController({ ...PIPELINED, adaptive: false }).plan()).toMatchObject({ k: 4, depth: 4, minSurvival: 0, cutoff: 0 })
    expect(new SpeculationController({ ...SYNC, maxDepth: 8, adaptive: false }).plan()).toMatchObject({ k: 4, depth: 1 })
  })
})
