/**
 * A session that takes another's prefix (adopt) goes on as one fed that prefix itself would,
 * on the local model (the caches' part: test/model/gpu-span-runner.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel, type ChatSession } from '../../client/language-model.js'
import { drainGeneration } from '../../client/text-generation.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'

describe('ChatSession.adopt on the local model', () => {
  const ref = readReference('stories260k')
  const promptIds: number[] = ref.prompts[1].prompt_ids
  const expected: number[] = ref.prompts[1].greedy_new_ids.slice(0, 20)
  let model: LanguageModel
  let other: LanguageModel
  beforeAll(async () => {
    model = await LanguageModel.local(BUNDLED_MODEL)
    other = await LanguageModel.local(BUNDLED_MODEL)
  })
  afterAll(async () => { await model.release(); await other.release() })

  async function greedy (session: ChatSession): Promise<number[]> {
    const gen = session.continueWith(promptIds, { maxNewTokens: 20, temperature: 0, stopAtEos: false })
    for (;;) {
      const step = await gen.next()
      if (step.done === true) return step.value.tokens
    }
  }

  it('copies the prompt from a session of the same model: one run saved, the reference tokens', async () => {
    const [a, b] = [await model.session(), await model.session()]
    await a.prefill(promptIds)
    expect(await b.adopt(a)).toBe(true)
    expect(b.target.stats()).toMatchObject({ prefixesAdopted: 1, runsComputed: 0 })
    expect(await greedy(b)).toEqual(expected)
    expect(await greedy(a)).toEqual(expected)
    await Promise.all([a.close(), b.close()])
  })

  it('copies a generation\'s whole prompt with its last logits: the first token needs no run, the tokens are the same', async () => {
    const [a, b, c] = [await model.session(), await model.session(), await model.session()]
    expect(await greedy(a)).toEqual(expected)
    expect(await b.adopt(a, promptIds)).toBe(true)
    expect(b.target.stats()).toMatchObject({ prefixesAdopted: 1, runsComputed: 0 })
    expect(await greedy(b)).toEqual(expected)
    // 20 tokens: the 19 runs after the first token, none for the prompt's last token
    expect(b.target.stats()).toMatchObject({ runsSent: 19, runsComputed: 19 })
    // sampled, with a repetition penalty: the copied logits give what a generation with the seed gives
    const opts = { maxNewTokens: 12, temperature: 1, topK: 40, repetitionPenalty: 1.3, seed: 3 }
    const sampled = async (s: ChatSession): Promise<number[]> => (await drainGeneration(s.continueWith(promptIds, opts))).tokens
    const d = await model.session()
    const want = await sampled(d)
    expect(await c.adopt(d, promptIds)).toBe(true)
    expect(await sampled(c)).toEqual(want)
    expect(c.target.stats()).toMatchObject({ runsSent: 11 })
    await Promise.all([a.close(), b.close(), c.close(), d.close()])
  })

  it('prefills instead when the source runs on another model\'s caches, with the same tokens', async () => {
    const a = await other.session()
    const b = await model.session()
    await a.prefill(promptIds)
    expect(await b.adopt(a)).toBe(false)
    expect(b.target.stats()).toMatchObject({ prefixesAdopted: 0, runsComputed: 1 })
    expect(await greedy(b)).toEqual(expected)
    await Promise.all([a.close(), b.close()])
  })

  it('generateMany: n continuations of one prompt, continuation i what generate samples with seed + i', async () => {
    const opts = { temperature: 1, topK: 40, seed: 9, maxNewTokens: 12 }
    const many = await model.generateMany(promptIds, 3, opts)
    const one = await Promise.all([9, 10, 11].map(async seed => {
      const gen = model.generate(promptIds, { ...opts, seed })
      for (;;) {
        const step = await gen.next()
        if (step.done === true) return step.value
      }
    }))
    expect(many.map(r => r.tokens)).toEqual(one.map(r => r.tokens))
    expect(new Set(many.map(r => r.text)).size).toBeGreaterThan(1)
    await expect(model.generateMany(promptIds, 0)).rejects.toThrow(RangeError)
  })

  it('generateMany: when the first session cannot take the prompt, every continuation fails with its reason', async () => {
    const tooLong = Array.from({ length: model.maxPositions }, (_, i) => 1 + (i % 50))
    await expect(model.generateMany(tooLong, 3, { maxNewTokens: 2 })).rejects.toThrow(/Cannot continue a sequence of 512 tokens/)
  })
})
