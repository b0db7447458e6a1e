/** Several sessions' runs packed into one pass over the weights give what each gives alone. */
import { describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { BUNDLED_MODEL, fixtureDir, maxAbsDiff } from '../helpers/fixtures.js'

function seeded (n: number, seed: number): Float32Array {
  let s = seed
  return Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return (s / 2 ** 32 - 0.5) * 2 })
}

describe('SpanRunner.forwardPacked', () => {
  for (const [name, dir, blocksPerGraph] of [['stories260k, one session per block', BUNDLED_MODEL, 1], ['tiny-llama-gqa, one session for all', fixtureDir('tiny-llama-gqa'), 2]] as const) {
    it(`${name}: each sequence's outputs and caches equal its own runs, over steps of 1 to 3 rows`, async () => {
      const ckpt = Checkpoint.open(dir)
      const C = ckpt.config.hiddenSize
      const runner = await SpanRunner.load(ckpt, 0, 2, { blocksPerGraph })
      const packed = [runner.newCache(), runner.newCache(), runner.newCache()]
      const alone = [runner.newCache(), runner.newCache(), runner.newCache()]
      for (const [i, n] of [4, 9, 1].entries()) {
        await runner.forward(seeded(n * C, i), packed[i]!, 0)
        await runner.forward(seeded(n * C, i), alone[i]!, 0)
      }
      for (let step = 0; step < 4; step++) {
        // sequence 1 sends 3 rows once, as a speculative run does; sequence 2 rolls back one position at step 2
        const rows = [1, step === 1 ? 3 : 1, 1]
        const positions = [0, 1, 2].map(i => (i === 2 && step === 2 ? packed[i]!.length - 1 : packed[i]!.length))
        const hidden = rows.map((r, i) => seeded(r * C, 100 * step + i))
        const outs = await runner.forwardPacked(hidden.map((h, i) => ({ hidden: h, cache: packed[i]!, position: positions[i]! })))
        for (let i = 0; i < 3; i++) {
          const expected = await runner.forward(hidden[i]!, alone[i]!, positions[i]!)
          expect(maxAbsDiff(outs[i]!, expected)).toBeLessThan(1e-4)
          expect(packed[i]!.length).toBe(alone[i]!.length)
          expect(maxAbsDiff(packed[i]!.block(1).key.view(), alone[i]!.block(1).key.view())).toBeLessThan(1e-4)
        }
      }
      await runner.release()
    })
  }

  it('refuses caches of different blocks and a start past a cache, leaving every cache at its position', async () => {
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    const C = ckpt.config.hiddenSize
    const runner = await SpanRunner.load(ckpt, 0, 3)
    const a = runner.newCache()
    await runner.forward(seeded(5 * C, 1), a, 0)
    await expect(runner.forwardPacked([{ hidden: seeded(C, 2), cache: a, position: 5 }, { hidden: seeded(C, 3), cache: runner.newCache(0, 1), position: 0 }])).rejects.toThrow(/Cannot pack caches of \[0, 3\) and \[0, 1\)/)
    await expect(runner.forwardPacked([{ hidden: seeded(C, 2), cache: a, position: 7 }])).rejects.toThrow(/cache ends at 5/)
    expect(a.length).toBe(5)
    await runner.release()
  })
})
