import { describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { ClientParts } from '../../model/client-parts.js'
import { RowBatcher } from '../../model/row-batcher.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

/** A row function (in 2, out 3: [a, b] -> [a, b, a + b]) that records each pass's row count and finishes when told. */
function fakeHead (): { run: (rows: Float32Array, T: number) => Promise<Float32Array>, passes: number[], finish: () => void, fail: (err: Error) => void } {
  const passes: number[] = []
  const pending: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  return {
    passes,
    run: async (rows, T) => {
      passes.push(T)
      await new Promise<void>((resolve, reject) => { pending.push({ resolve, reject }) })
      const out = new Float32Array(T * 3)
      for (let t = 0; t < T; t++) out.set([rows[2 * t] as number, rows[2 * t + 1] as number, (rows[2 * t] as number) + (rows[2 * t + 1] as number)], 3 * t)
      return out
    },
    finish: () => { pending.shift()?.resolve() },
    fail: err => { pending.shift()?.reject(err) }
  }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

describe('RowBatcher', () => {
  it('starts a lone call at once, and runs the calls that came meanwhile together, each getting its rows', async () => {
    const head = fakeHead()
    const b = new RowBatcher(head.run, 2, 3)
    const first = b.run(Float32Array.of(1, 2))
    await settle()
    expect(head.passes).toEqual([1]) // no waiting for company
    const second = b.run(Float32Array.of(3, 4, 5, 6))
    const third = b.run(Float32Array.of(7, 8))
    await settle()
    expect(head.passes).toEqual([1])
    head.finish()
    expect([...await first]).toEqual([1, 2, 3])
    await settle()
    expect(head.passes).toEqual([1, 3]) // the two waiting calls, 3 rows, in one pass
    head.finish()
    expect([...await second]).toEqual([3, 4, 7, 5, 6, 11])
    expect([...await third]).toEqual([7, 8, 15])
    expect(b.batchedPasses).toBe(1)
  })

  it('keeps a pass within maxRows (a bigger call goes alone), and a failed pass fails only its calls', async () => {
    const head = fakeHead()
    const b = new RowBatcher(head.run, 2, 3, 3)
    const first = b.run(Float32Array.of(0, 0))
    const big = b.run(new Float32Array(2 * 4)) // 4 rows > maxRows
    const small = b.run(Float32Array.of(1, 1))
    await settle()
    head.fail(new Error('device lost'))
    await expect(first).rejects.toThrow('device lost')
    await settle()
    expect(head.passes).toEqual([1, 4])
    head.finish()
    expect(await big).toHaveLength(12)
    await settle()
    expect(head.passes).toEqual([1, 4, 1])
    head.finish()
    expect([...await small]).toEqual([1, 1, 2])
  })
})

describe('ClientParts batches the LM head of concurrent calls', () => {
  it('gives each call the logits it gets alone', async () => {
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    const [batched, alone] = await Promise.all([ClientParts.load(ckpt), ClientParts.load(ckpt, { batchHead: false })])
    try {
      const inputs = [[1, 403, 407], [261], [378, 432], [383], [286]].map(ids => batched.embed(ids))
      const together = await Promise.all(inputs.map(async h => await batched.logits(h)))
      expect(batched.batchedHeadPasses).toBeGreaterThan(0)
      for (const [i, h] of inputs.entries()) {
        const want = await alone.logits(h)
        const got = together[i] as Float32Array[]
        expect(got).toHaveLength(want.length)
        for (const [t, row] of want.entries()) {
          let diff = 0
          for (let v = 0; v < row.length; v++) diff = Math.max(diff, Math.abs((got[t]![v] as number) - (row[v] as number)))
          expect(diff).toBeLessThan(1e-5)
        }
      }
    } finally {
      await Promise.all([batched.release(), alone.release()])
    }
  })
})
