import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { WholeModel } from '../../model/whole-model.js'
import { argmax, fixtureDir, maxAbsDiff, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'

const ATOL = 1e-4

describe('WholeModel (the lean one-session graph drafts run on) matches transformers', () => {
  const gqa = readReference('tiny-llama-gqa')
  const draftRef = readReference('stories260k-draft')
  let model: WholeModel
  let draft: WholeModel
  beforeAll(async () => {
    [model, draft] = await Promise.all([
      WholeModel.load(Checkpoint.open(fixtureDir('tiny-llama-gqa'))),
      WholeModel.load(Checkpoint.open(fixtureDir('stories260k-draft')))
    ])
  })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  it(`tiny-llama-gqa (grouped-query, untied head): logits at every position within ${ATOL}`, async () => {
    expect(maxAbsDiffRows(await model.newSession().forward(gqa.input_ids), gqa.logits)).toBeLessThan(ATOL)
  })

  it('chunked prefill through the cache equals the reference, and greedy decoding gives its tokens', async () => {
    const [first, second] = gqa.kv_cache_check.chunks as [number[], number[]]
    const seq = model.newSession()
    const chunked = [...await seq.forward(first), ...await seq.forward(second)]
    expect(maxAbsDiffRows(chunked, gqa.kv_cache_check.logits)).toBeLessThan(ATOL)
    const out: number[] = []
    let row = chunked.at(-1) as Float32Array
    for (let i = 0; i < gqa.greedy_new_ids.length; i++) {
      out.push(argmax(row))
      row = (await seq.forward([out.at(-1) as number]))[0] as Float32Array
    }
    expect(out).toEqual(gqa.greedy_new_ids)
  })

  it('stories260k-draft: last prompt logits within the tolerance', async () => {
    const logits = await draft.newSession().forward(draftRef.prompt_ids)
    expect(maxAbsDiff(logits.at(-1) as Float32Array, draftRef.last_prompt_logits)).toBeLessThan(ATOL)
  })

  it('a run from an earlier position rolls the cache back (position-addressed)', async () => {
    const seq = model.newSession()
    await seq.forward(gqa.input_ids)
    await seq.forward([3, 4, 5]) // a wrong continuation, then back to position 5
    expect(maxAbsDiffRows(await seq.forward(gqa.input_ids.slice(5), 5), gqa.logits.slice(5))).toBeLessThan(ATOL)
    expect(seq.length).toBe(gqa.input_ids.length)
  })

  it('a token tree: each row equals its path run as a chain, and only the trunk stays cached', async () => {
    const ids: number[] = gqa.input_ids
    const seq = model.newSession()
    await seq.forward(ids.slice(0, 6))
    // trunk ids[6..8), then a branch forking after the cached past and one after trunk row 0
    const tree = [ids[6], ids[7], 11, 12, 13] as number[]
    const parents = [-1, 0, -1, 2, 0]
    const rows = await seq.forward(tree, 6, parents)
    expect(seq.length).toBe(8)
    const chain = async (path: number[]): Promise<Float32Array> => {
      const s = model.newSession()
      return (await s.forward([...ids.slice(0, 6), ...path])).at(-1) as Float32Array
    }
    expect(maxAbsDiff(rows[1] as Float32Array, await chain([ids[6] as number, ids[7] as number]))).toBeLessThan(1e-5)
    expect(maxAbsDiff(rows[3] as Float32Array, await chain([11, 12]))).toBeLessThan(1e-5)
    expect(maxAbsDiff(rows[4] as Float32Array, await chain([ids[6] as number, 13]))).toBeLessThan(1e-5)
    // the branch left nothing behind: the next run sees the trunk only
    expect(maxAbsDiffRows(await seq.forward(ids.slice(8)), gqa.logits.slice(8))).toBeLessThan(ATOL)
  })

  it('drafts what the span-composed LocalModel drafts', async () => {
    const local = await LocalModel.load(Checkpoint.open(fixtureDir('stories260k-draft')))
    try {
      const [a, b] = [draft.newSession(), local.newSession()]
      expect(maxAbsDiffRows(await a.forward(draftRef.prompt_ids), await b.forward(draftRef.prompt_ids))).toBeLessThan(1e-5)
      const tree = [5, 6, 7, 8]
      const parents = [-1, 0, -1, 2]
      expect(maxAbsDiffRows(await a.forward(tree, draftRef.prompt_ids.length, parents), await b.forward(tree, draftRef.prompt_ids.length, parents))).toBeLessThan(1e-5)
    } finally {
      await local.release()
    }
  })

  it('refuses bad input with a clear error and keeps its cache', async () => {
    const seq = model.newSession()
    await seq.forward(gqa.input_ids.slice(0, 4))
    await expect(seq.forward([1], 9)).rejects.toThrow(/cache ends at 4/)
    await expect(seq.forward([model.config.vocabSize])).rejects.toThrow(/vocabulary size/)
    await expect(seq.forward([])).rejects.toThrow(/zero tokens/)
    await expect(seq.forward([1, 2], 4, [-1, 5])).rejects.toThrow(/Invalid token tree/)
    expect(seq.length).toBe(4)
    expect(maxAbsDiffRows(await seq.forward(gqa.input_ids.slice(4)), gqa.logits.slice(4))).toBeLessThan(ATOL)
  })

  it('runs past max_position_embeddings as the block graphs do (rotary angles from positions, no table)', async () => {
    const local = await LocalModel.load(Checkpoint.open(fixtureDir('stories260k-draft')))
    try {
      const ids = Array.from({ length: draft.config.maxPositions + 8 }, (_, i) => 3 + ((i * 37) % 500))
      const [a, b] = [draft.newSession(), local.newSession()]
      await a.forward(ids.slice(0, -4))
      await b.forward(ids.slice(0, -4))
      expect(maxAbsDiffRows(await a.forward(ids.slice(-4)), await b.forward(ids.slice(-4)))).toBeLessThan(1e-4)
    } finally {
      await local.release()
    }
  })
})
