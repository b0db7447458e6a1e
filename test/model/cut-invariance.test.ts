import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { fixtureDir, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'

/** Every subset of the cut points 1..L-1, e.g. [], [1], [1,3], ... */
function allSplits (L: number): number[][] {
  const cuts = Array.from({ length: L - 1 }, (_, i) => i + 1)
  return Array.from({ length: 2 ** cuts.length }, (_, mask) => cuts.filter((_, i) => (mask >> i) & 1))
}

describe('cut-anywhere invariance', () => {
  const ckpt = Checkpoint.open(fixtureDir('tiny-llama-gqa'))
  const ids: number[] = readReference('tiny-llama-gqa').input_ids
  let whole: Float32Array[]
  let oneSpan: LocalModel
  beforeAll(async () => {
    oneSpan = await LocalModel.load(ckpt)
    whole = await oneSpan.newSession().forward(ids)
  })
  afterAll(async () => { await oneSpan.release() })

  it(`gives the same logits (1e-5) for all ${2 ** (ckpt.config.numLayers - 1)} ways to cut ${ckpt.config.numLayers} blocks`, async () => {
    for (const split of allSplits(ckpt.config.numLayers)) {
      const model = await LocalModel.load(ckpt, { split })
      const seq = model.newSession()
      const logits = [...await seq.forward(ids.slice(0, 7)), ...await seq.forward(ids.slice(7))]
      expect(maxAbsDiffRows(logits, whole), `split ${split.join(',')}`).toBeLessThan(1e-5)
      await model.release()
    }
  })

  it('one ORT session per block equals one session for the whole span', async () => {
    const perBlock = await LocalModel.load(ckpt, { blocksPerGraph: 1 })
    expect(maxAbsDiffRows(await perBlock.newSession().forward(ids), whole)).toBeLessThan(1e-5)
    await perBlock.release()
  })
})
