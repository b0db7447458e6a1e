import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, type DecodeMode, type DecodeStats, type DraftModel } from '../../client/decoding/index.js'
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

  async function sample (mode: DecodeMode, seed: number, latency: number, drafter?: DrafterKind, tree?: { branches: number }): Promise<number[]> {
    return (await sampleWithStats(mode, seed, latency, drafter, tree)).tokens
  }

  /** `tree` fixes the settings (k 4, depth 4, branches of 4) so that branches are sure to go out. */
  async function sampleWithStats (mode: DecodeMode, seed: number, latency: number, drafter?: DrafterKind, tree?: { branches: number, prompt?: number[] }): Promise<{ tokens: number[], stats: DecodeStats }> {
    return await decodeAll(new LocalTarget(model, { oneWayLatencyMs: latency }), {
      promptIds: tree?.prompt ?? PROMPT,
      sampler: new Sampler({ ...SETTINGS, seed }),
      maxNewTokens: 40,
      eosTokenIds: [],
      mode,
      ...(drafter !== undefined ? { drafter: makeDrafter(drafter, draft) } : {}),
      ...(tree !== undefined ? { adaptive: false, k: 4, maxInFlight: 4, branches: tree.branches, branchLength: 4 } : {})
    })
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

  it('tree speculation changes when sampled tokens arrive, never which: branches on the verifier\'s candidates rescue rejections', async () => {
    let rescued = 0
    let branchTokens = 0
    for (const { prompt_ids: prompt } of STORIES_REF.prompts) {
      for (const seed of [1, 2]) {
        const chain = await sampleWithStats('sync', seed, 0, 'model', { branches: 0, prompt })
        expect(chain.stats.rescued).toBe(0)
        for (const mode of ['sync', 'pipelined'] as const) {
          const tree = await sampleWithStats(mode, seed, mode === 'pipelined' ? 2 : 0, 'model', { branches: 8, prompt })
          expect(tree.tokens, `${mode}, seed ${seed}`).toEqual(chain.tokens)
          expect(tree.stats.branchRows).toBeGreaterThan(0)
          rescued += tree.stats.rescued
          branchTokens += tree.stats.branchTokens
        }
      }
    }
    expect(rescued).toBeGreaterThan(0)
    expect(branchTokens).toBeGreaterThanOrEqual(rescued)
  })
})
