/**
 * SpeculationMemory: a decode starts from what earlier decodes with the same drafter learned
 * (a short generation is otherwise over before a cold controller has timed its round trip).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, SpeculationController, SpeculationMemory, type DraftModel } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { loadStories, makeDrafter, STORIES_REF, TrackingTarget } from '../helpers/decoding-fixtures.js'

const PIPELINED = { mode: 'pipelined', maxK: 4, maxDepth: 4, maxBranches: 8, branchLength: 4 } as const

describe('SpeculationController.learned', () => {
  it('a controller started from another one\'s learned state estimates and plans the same', () => {
    const a = new SpeculationController(PIPELINED)
    for (let i = 0; i < 30; i++) {
      a.observeDraft(i % 5 !== 0, 0.6)
      a.observeRun(40 + (i % 3) * 6, true, 5 + (i % 3) * 20)
      a.observeDrafting(4, 0.5)
      a.observeCycle(2)
      a.observeWaiting(30, 40)
    }
    const b = new SpeculationController({ ...PIPELINED, from: a.learned() })
    expect(b.estimates).toEqual(a.estimates)
    expect(b.plan()).toEqual(a.plan())
    expect(new SpeculationController(PIPELINED).estimates).not.toEqual(a.estimates)
  })
})

describe('decode with a SpeculationMemory', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await model?.release(); await draft?.release() })

  it('the next decode with the same drafter goes on from the last one\'s estimates; output is unchanged', async () => {
    const memory = new SpeculationMemory()
    const drafter = makeDrafter('model', draft)
    const prompt = STORIES_REF.prompts[0]?.prompt_ids as number[]
    const run = async (m?: SpeculationMemory): Promise<number[]> => (await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 2 }), {
      promptIds: prompt, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 24, eosTokenIds: [], mode: 'pipelined', drafter, ...(m !== undefined ? { memory: m } : {})
    })).tokens
    const cold = await run()
    expect(memory.recall(drafter, 'pipelined', true)).toBeUndefined()
    expect(await run(memory)).toEqual(cold)
    const first = memory.recall(drafter, 'pipelined', true)
    expect(first?.runMs).toBeGreaterThan(0)
    expect(first?.rowFit.n).toBeGreaterThan(0)
    expect(await run(memory)).toEqual(cold)
    const second = memory.recall(drafter, 'pipelined', true)
    // the second decode's fit kept counting from the first one's runs sent alone
    expect(second?.rowFit.n).toBeGreaterThan(first?.rowFit.n as number)
    // kept apart: another drafter, another mode, sampled decoding
    expect(memory.recall(makeDrafter('model', draft), 'pipelined', true)).toBeUndefined()
    expect(memory.recall(drafter, 'sync', true)).toBeUndefined()
    expect(memory.recall(drafter, 'pipelined', false)).toBeUndefined()
  })

  it('the first run is planned from what the memory holds, not from priors', async () => {
    const drafter = makeDrafter('model', draft)
    const prompt = STORIES_REF.prompts[0]?.prompt_ids as number[]
    /** Rows of the first run a decode sends (prompt + drafts + branches). */
    const firstRun = async (memory?: SpeculationMemory): Promise<number> => {
      const rows: number[] = []
      const target = new TrackingTarget(new LocalTarget(model), ids => { rows.push(ids.length) })
      await decodeAll(target, { promptIds: prompt, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 8, eosTokenIds: [], mode: 'pipelined', drafter, ...(memory !== undefined ? { memory } : {}) })
      return rows[0] as number
    }
    // a memory of a hopeless draft over a fast target: the prompt alone, no drafts, no branches
    const hopeless = new SpeculationController({ ...PIPELINED })
    for (let i = 0; i < 60; i++) { hopeless.observeDraft(false, 0.5); hopeless.observeRun(1, true, 5); hopeless.observeDrafting(1, 0.5); hopeless.observeCycle(1) }
    const memory = new SpeculationMemory()
    memory.remember(drafter, 'pipelined', true, hopeless.learned())
    expect(await firstRun(memory)).toBe(prompt.length)
    expect(await firstRun()).toBeGreaterThan(prompt.length + 1) // priors: acceptance 0.7, drafts and branches
  })
})
