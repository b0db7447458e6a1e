import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, type Drafter, type DraftModel, DraftModelDrafter, SpeculationMemory } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { rowCostOf, SpeculationController } from '../../client/decoding/speculation-controller.js'
import { Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { SlowDrafter } from '../../scripts/lib/slow-drafter.js'
import { loadStories, STORIES_REF } from '../helpers/decoding-fixtures.js'

const PROMPT = STORIES_REF.prompts[0] as (typeof STORIES_REF.prompts)[number]

/** Proposes a token the target never picks here (0: <unk>), confidently, 4 ms per token. */
const slowWrongDrafter: Drafter = {
  propose: async ({ maxTokens }) => {
    await sleep(4 * maxTokens)
    return Array.from({ length: maxTokens }, () => ({ token: 0, q: undefined, confidence: 0.9 }))
  }
}

describe('pipelined decoding with a slow drafter', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  it('verifies a result that arrived while it drafted before drafting further runs', async () => {
    // every run is rejected; its result is back (2 ms) long before the next run is drafted
    // (8 ms). Filling all 8 runs of the depth first drafted ~12 tokens per decided token (376
    // for 32); verifying first, ~4 (118).
    const maxNewTokens = 32
    const { tokens, stats } = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 1 }), {
      promptIds: PROMPT.prompt_ids,
      sampler: new Sampler({ temperature: 0 }),
      maxNewTokens,
      eosTokenIds: [],
      mode: 'pipelined',
      drafter: slowWrongDrafter,
      k: 2,
      maxInFlight: 8,
      branches: 0,
      adaptive: false
    })
    expect(tokens).toEqual(PROMPT.greedy_new_ids.slice(0, maxNewTokens))
    expect(stats.accepted).toBe(0)
    expect(stats.proposed).toBeLessThanOrEqual(maxNewTokens * 2 * 3)
  })

  it('adaptive: drafting while the client would wait is free, so a slow draft does not stall the pipeline', async () => {
    // 2+ ms a draft token against ~100 ms round trips: charged in full that is a survival bar
    // of draftMsPerToken / runMs (about 0.025 here), and deep speculation stops. The client
    // waits for results most of the time, so the bar scales the drafting cost by its busy
    // share (about 0.16 here). Compared with this run's own figures, not a fixed number: the
    // bar also carries a row cost when the run times seem to grow with rows (0.005 without
    // it, up to 0.0165 with it, in runs on a loaded machine; a fixed bar of 0.016 failed).
    const maxNewTokens = 48
    const memory = new SpeculationMemory()
    const drafter = new SlowDrafter(new DraftModelDrafter(draft), 2)
    const { tokens } = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 50 }), {
      promptIds: PROMPT.prompt_ids,
      sampler: new Sampler({ temperature: 0 }),
      maxNewTokens,
      eosTokenIds: [],
      mode: 'pipelined',
      drafter,
      k: 4,
      maxInFlight: 2,
      branches: 0,
      adaptive: true,
      memory
    })
    expect(tokens).toEqual(PROMPT.greedy_new_ids.slice(0, maxNewTokens))
    const learned = memory.recall(drafter, 'pipelined', true)
    const chargedInFull = (learned?.draftMsPerToken ?? 0) / (learned?.runMs ?? Infinity)
    expect(learned?.busy).toBeLessThan(0.5)
    expect(chargedInFull).toBeGreaterThan(0.018)
    // charged in full the bar's drafting part is chargedInFull; scaled by the busy share, below
    // 0.75x. The bar's other part, the rows' cost, is what this run measured: on a loaded machine
    // (the whole suite at once) it reached 0.02 and failed a bar of 0.75x alone. The bar is the
    // controller's plan from the same final estimates that chargedInFull and rowPart come from:
    // the decode's last plan (stats.plan) was made before its last runs' figures, and under load
    // those moved the busy share and the row cost enough to fail the comparison (CI, 0.0255
    // against 0.0232)
    const rowPart = (rowCostOf(learned?.rowFit ?? { n: 0, x: 0, y: 0, xx: 0, xy: 0, yy: 0 }) ?? 0) / (learned?.runMs ?? Infinity)
    const next = new SpeculationController({ mode: 'pipelined', maxK: 4, maxDepth: 2, maxBranches: 0, branchLength: 0, from: learned }).plan()
    expect(next.minSurvival).toBeLessThan(0.75 * chargedInFull + rowPart)
  }, 20_000)
})
