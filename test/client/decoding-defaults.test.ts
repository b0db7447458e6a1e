import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, DEFAULT_K, type DecodeMode, type Drafter } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { loadStories, STORIES_REF } from '../helpers/decoding-fixtures.js'

const PROMPT = STORIES_REF.prompts[0] as (typeof STORIES_REF.prompts)[number]

/** Remembers how many tokens each proposal was asked for; always wrong (0 is <unk>). */
function recordingDrafter (asked: number[]): Drafter {
  return {
    propose: async ({ maxTokens }) => {
      asked.push(maxTokens)
      return Array.from({ length: maxTokens }, () => ({ token: 0, q: undefined, confidence: 0.9 }))
    }
  }
}

describe('default draft length per run', () => {
  let model: LocalModel
  beforeAll(async () => { ({ model } = await loadStories()) })
  afterAll(async () => { await model.release() })

  for (const [mode, expected] of [['sync', 16], ['pipelined', 4]] as Array<[DecodeMode, number]>) {
    it(`${mode} runs carry up to ${expected} drafts when k is not given`, async () => {
      const asked: number[] = []
      const { tokens } = await decodeAll(new LocalTarget(model), {
        promptIds: PROMPT.prompt_ids,
        sampler: new Sampler({ temperature: 0 }),
        maxNewTokens: 24,
        eosTokenIds: [],
        mode,
        drafter: recordingDrafter(asked),
        branches: 0,
        adaptive: false
      })
      expect(tokens).toEqual(PROMPT.greedy_new_ids.slice(0, 24))
      expect(DEFAULT_K[mode]).toBe(expected)
      expect(Math.max(...asked)).toBe(expected)
    })
  }
})
