/** PrimedTarget answers one lone run from known logits; RowTap keeps the row of one position. */
import { describe, expect, it } from 'vitest'
import { PrimedTarget, RowTap } from '../../client/primed-target.js'
import type { PendingRun, TargetModel, TargetStats } from '../../client/target-model.js'

/** A target that records what it is sent; run r's row i is filled with 100 r + its position. */
function fakeTarget (V: number): TargetModel & { sent: Array<{ ids: readonly number[], position: number }>, cancelled: number[] } {
  let next = 0
  const sent: Array<{ ids: readonly number[], position: number }> = []
  const cancelled: number[] = []
  return {
    vocabSize: V,
    sent,
    cancelled,
    submit (ids: readonly number[], position: number): PendingRun {
      sent.push({ ids, position })
      const runId = next++
      const rows = ids.map((_, i) => new Float32Array(V).fill(100 * runId + position + i))
      return { runId, position, length: ids.length, logits: Promise.resolve(rows) }
    },
    cancel (runIds: readonly number[]): void { cancelled.push(...runIds) },
    stats (): TargetStats { return { runsSent: sent.length, runsCancelled: 0, failovers: 0, route: 'fake' } },
    async close (): Promise<void> {}
  }
}

describe('PrimedTarget', () => {
  it('answers the first run when it is the primed position\'s token alone, and sends everything after', async () => {
    const inner = fakeTarget(4)
    const primed = new PrimedTarget(inner, 7, Float32Array.of(1, 2, 3, 4))
    const first = primed.submit([42], 7)
    expect(Array.from((await first.logits)[0] as Float32Array)).toEqual([1, 2, 3, 4])
    expect(inner.sent).toEqual([])
    primed.cancel([first.runId]) // nothing to cancel underneath
    expect(inner.cancelled).toEqual([])
    const second = primed.submit([5], 8)
    expect(inner.sent).toEqual([{ ids: [5], position: 8 }])
    primed.cancel([second.runId])
    expect(inner.cancelled).toEqual([second.runId])
  })

  it('sends a first run of several rows (a speculative one) or at another position, and answers nothing after', async () => {
    const inner = fakeTarget(4)
    const primed = new PrimedTarget(inner, 7, Float32Array.of(1, 2, 3, 4))
    await primed.submit([42, 43, 44], 7).logits
    await primed.submit([45], 7).logits
    expect(inner.sent.map(s => s.ids)).toEqual([[42, 43, 44], [45]])
    expect(() => new PrimedTarget(inner, 0, new Float32Array(3))).toThrow(RangeError)
  })
})

describe('RowTap', () => {
  it('keeps a copy of the first row returned for its position, from whichever run covers it', async () => {
    const inner = fakeTarget(2)
    const tap = new RowTap(inner, 5)
    await tap.submit([1, 2], 0).logits // positions 0-1: not it
    expect(tap.row).toBeUndefined()
    const rows = await tap.submit([3, 4, 5], 3).logits // run 1, positions 3-5
    expect(Array.from(tap.row as Float32Array)).toEqual([105, 105])
    ;(rows[2] as Float32Array).fill(-1) // the decoder's rows are its own
    expect(Array.from(tap.row as Float32Array)).toEqual([105, 105])
    await tap.submit([9], 5).logits // run 2 over the position again: the first row stays
    expect(Array.from(tap.row as Float32Array)).toEqual([105, 105])
  })
})
