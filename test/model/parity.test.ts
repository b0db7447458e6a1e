import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { argmax, fixtureDir, maxAbsDiff, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'

const ATOL = 1e-4

/** Greedy continuation with the KV cache: prompt in one run, then one token per run. */
async function greedy (model: LocalModel, promptIds: readonly number[], n: number): Promise<number[]> {
  const seq = model.newSession()
  let logits = (await seq.forward(promptIds)).at(-1) as Float32Array
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    out.push(argmax(logits))
    logits = (await seq.forward([out.at(-1) as number]))[0] as Float32Array
  }
  return out
}

describe('stories260k matches Hugging Face transformers', () => {
  const ref = readReference('stories260k')
  let model: LocalModel
  beforeAll(async () => { model = await LocalModel.load(Checkpoint.open(fixtureDir('stories260k'))) })
  afterAll(async () => { await model.release() })

  for (const p of ref.prompts) {
    it(`"${p.prompt}": last prompt logits within ${ATOL}, 48 greedy tokens identical`, async () => {
      const logits = await model.newSession().forward(p.prompt_ids)
      expect(maxAbsDiff(logits.at(-1) as Float32Array, p.last_prompt_logits)).toBeLessThan(ATOL)
      expect(await greedy(model, p.prompt_ids, p.greedy_new_ids.length)).toEqual(p.greedy_new_ids)
    })
  }
})

describe('tiny-llama-gqa (grouped-query attention, untied head) matches transformers', () => {
  const ref = readReference('tiny-llama-gqa')
  let model: LocalModel
  beforeAll(async () => { model = await LocalModel.load(Checkpoint.open(fixtureDir('tiny-llama-gqa'))) })
  afterAll(async () => { await model.release() })

  it(`logits at every position within ${ATOL}`, async () => {
    const logits = await model.newSession().forward(ref.input_ids)
    expect(maxAbsDiffRows(logits, ref.logits)).toBeLessThan(ATOL)
  })

  it('greedy tokens identical', async () => {
    expect(await greedy(model, ref.input_ids, ref.greedy_new_ids.length)).toEqual(ref.greedy_new_ids)
  })

  it('chunked prefill through the KV cache (7 then 5) equals one shot and the reference', async () => {
    const [first, second] = ref.kv_cache_check.chunks as [number[], number[]]
    const seq = model.newSession()
    const chunked = [...await seq.forward(first), ...await seq.forward(second)]
    const oneShot = await model.newSession().forward(ref.input_ids)
    expect(maxAbsDiffRows(chunked, oneShot)).toBeLessThan(1e-5)
    expect(maxAbsDiffRows(chunked, ref.kv_cache_check.logits)).toBeLessThan(ATOL)
  })

  it('a run from an earlier position rolls the cache back (position-addressed)', async () => {
    const seq = model.newSession()
    await seq.forward(ref.input_ids)
    const again = await seq.forward(ref.input_ids.slice(5), 5)
    expect(maxAbsDiffRows(again, ref.logits.slice(5))).toBeLessThan(ATOL)
    await expect(seq.forward([1], 99)).rejects.toThrow(/cache ends at/)
  })
})
