import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, type DecodeMode, type DraftModel } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { Sampler, type SamplerOptions } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { loadStories, makeDrafter, STORIES_REF, type DrafterKind } from '../helpers/decoding-fixtures.js'

const PROMPT = (STORIES_REF.prompts[0] as (typeof STORIES_REF.prompts)[number]).prompt_ids
const SETTINGS: SamplerOptions = { temperature: 1, topP: 0.95, repetitionPenalty: 1.1 }

describe('seeded sampling is reproducible in every mode', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  async function sample (mode: DecodeMode, seed: number, latency: number, drafter?: DrafterKind): Promise<number[]> {
    const { tokens } = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: latency }), {
      promptIds: PROMPT,
      sampler: new Sampler({ ...SETTINGS, seed }),
      maxNewTokens: 40,
      eosTokenIds: [],
      mode,
      ...(drafter !== undefined ? { drafter: makeDrafter(drafter, draft) } : {})
    })
    return tokens
  }

  it('none: the same seed gives the same text, another seed another', async () => {
    const [a, b, c] = await Promise.all([sample('none', 1, 0), sample('none', 1, 2), sample('none', 2, 0)])
    expect(a).toHaveLength(40)
    expect(b).toEqual(a)
    expect(c).not.toEqual(a)
  })

  for (const drafter of ['model', 'ngram'] as const) {
    it(`${drafter} drafter: sync and pipelined give one text per seed, whatever the latency`, async () => {
      for (const seed of [1, 2]) {
        const runs = await Promise.all([
          sample('sync', seed, 0, drafter),
          sample('sync', seed, 3, drafter),
          sample('pipelined', seed, 0, drafter),
          sample('pipelined', seed, 3, drafter)
        ])
        const first = runs[0] as number[]
        expect(first).toHaveLength(40)
        for (const run of runs) expect(run).toEqual(first)
      }
      expect(await sample('pipelined', 3, 0, drafter)).not.toEqual(await sample('pipelined', 1, 0, drafter))
    })
  }
})
