/** A cache that takes another's prefix (adopt) computes what one fed that prefix itself would. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel, type ChatSession } from '../../client/language-model.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { ShapeError } from '../../model/errors.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { SpanRunner } from '../../model/span-runner.js'
import { BUNDLED_MODEL, fixtureDir, maxAbsDiff, readReference } from '../helpers/fixtures.js'

/** Deterministic (1,T,C) activations. */
function hiddenRows (T: number, C: number, salt: number): Float32Array {
  return Float32Array.from({ length: T * C }, (_, i) => Math.cos(i * 0.29 + salt))
}

describe('copying a cache prefix', () => {
  const ckpt = Checkpoint.open(fixtureDir('tiny-llama-gqa'))
  const C = ckpt.config.hiddenSize
  const L = ckpt.config.numLayers
  let cpu: SpanRunner
  let gpu: GpuSpanRunner
  beforeAll(async () => {
    cpu = await SpanRunner.load(ckpt, 0, L)
    gpu = await GpuSpanRunner.load(ckpt, 0, L, { device: 'cpu' }) // the GPU graph on the CPU EP
  })
  afterAll(async () => { await cpu.release(); await gpu.release() })

  for (const kind of ['cpu', 'gpu'] as const) {
    it(`${kind}: the copy goes on as the source would, and each then rolls back and grows on its own`, async () => {
      const runner = kind === 'cpu' ? cpu : gpu
      const [source, copy, ref] = [runner.newCache(), runner.newCache(), cpu.newCache()]
      const prefix = hiddenRows(7, C, 1)
      await runner.forward(prefix, source, 0)
      await cpu.forward(prefix.subarray(0, 5 * C), ref, 0)
      copy.copyPrefix(source, 5)
      expect(copy.length).toBe(5)
      // the source moves on (a rollback and new rows): the copy must not see it
      await runner.forward(hiddenRows(3, C, 2), source, 4)
      if (kind === 'gpu') source.dispose() // shared device tensors outlive the source
      const x = hiddenRows(2, C, 3)
      expect(maxAbsDiff(await runner.forward(x, copy, 5), await cpu.forward(x, ref, 5))).toBeLessThan(1e-5)
      const y = hiddenRows(1, C, 4)
      expect(maxAbsDiff(await runner.forward(y, copy, 3), await cpu.forward(y, ref, 3))).toBeLessThan(1e-5)
    })
  }

  it('refuses a longer prefix than the source holds, and caches of other blocks or kinds', async () => {
    const source = cpu.newCache()
    await cpu.forward(hiddenRows(3, C, 5), source, 0)
    expect(() => { cpu.newCache().copyPrefix(source, 4) }).toThrow(ShapeError)
    expect(() => { cpu.newCache(0, 1).copyPrefix(source, 2) }).toThrow(ShapeError)
    expect(() => { gpu.newCache().copyPrefix(source, 2) }).toThrow(ShapeError)
  })
})

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

  it('prefills instead when the source runs on another model\'s caches, with the same tokens', async () => {
    const a = await other.session()
    const b = await model.session()
    await a.prefill(promptIds)
    expect(await b.adopt(a)).toBe(false)
    expect(b.target.stats()).toMatchObject({ prefixesAdopted: 0, runsComputed: 1 })
    expect(await greedy(b)).toEqual(expected)
    await Promise.all([a.close(), b.close()])
  })
})
