import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DraftModel, DraftModelDrafter, type DraftSequence, type DraftToken, keyedCandidates, loadDraftModel, NgramDrafter, SAMPLED_CANDIDATES } from '../../client/decoding/index.js'
import { argmax, Sampler, softmax } from '../../client/sampling/index.js'
import { greedyBeliefs } from '../../client/decoding/draft-model-drafter.js'
import { LocalModel } from '../../model/local-model.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { WholeModel } from '../../model/whole-model.js'
import { writeRandomLlama } from '../../scripts/make-random-llama.js'
import { fixtureDir, readReference } from '../helpers/fixtures.js'
import { loadStories } from '../helpers/decoding-fixtures.js'

const greedy = new Sampler({ temperature: 0 })
const tokens = (drafts: DraftToken[]): number[] => drafts.map(d => d.token)

describe('NgramDrafter', () => {
  it('proposes what followed the longest earlier match of the suffix, then repeats the lookup', async () => {
    const drafter = new NgramDrafter()
    const drafts = await drafter.propose({ context: [7, 1, 2, 3, 4, 9, 1, 2, 3], maxTokens: 3, sampler: greedy })
    expect(tokens(drafts)).toEqual([4, 9, 1])
    expect(drafts[0]).toMatchObject({ q: undefined, confidence: 1 })
  })

  it('prefers the most recent occurrence and falls back to shorter n-grams', async () => {
    const drafter = new NgramDrafter({ maxN: 3 })
    const [a] = await drafter.propose({ context: [5, 8, 6, 8, 5], maxTokens: 1, sampler: greedy })
    expect(a).toMatchObject({ token: 8, confidence: 1 / 3 }) // only "5" matches, most recent at 0
    const [b] = await drafter.propose({ context: [3, 1, 4, 3, 2, 9, 3], maxTokens: 1, sampler: greedy })
    expect(b?.token).toBe(2)
  })

  it('proposes nothing without a match, and stops after a low-confidence token', async () => {
    const drafter = new NgramDrafter()
    expect(await drafter.propose({ context: [1, 2, 3], maxTokens: 4, sampler: greedy })).toEqual([])
    const drafts = await drafter.propose({ context: [5, 6, 7, 5], maxTokens: 4, sampler: greedy, minConfidence: 0.5 })
    expect(tokens(drafts)).toEqual([6]) // a 1-gram match (confidence 1/3) ends the proposal
  })

  it('rejects bad settings', () => {
    expect(() => new NgramDrafter({ minN: 0 })).toThrow(RangeError)
    expect(() => new NgramDrafter({ minN: 3, maxN: 2 })).toThrow(RangeError)
  })
})

describe('DraftModelDrafter', () => {
  const ref = readReference('stories260k-draft')
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  it('greedy drafts equal the draft model\'s own greedy reference', async () => {
    const drafter = new DraftModelDrafter(draft)
    expect(tokens(await drafter.propose({ context: ref.prompt_ids, maxTokens: 32, sampler: greedy }))).toEqual(ref.greedy_new_ids)
  })

  it('rolls its cache back to a changed context and feeds only what it lacks', async () => {
    const drafter = new DraftModelDrafter(draft)
    const ids: number[] = ref.greedy_new_ids
    await drafter.propose({ context: [...ref.prompt_ids, 5, 6, 7, 8], maxTokens: 4, sampler: greedy }) // a wrong branch
    expect(tokens(await drafter.propose({ context: [...ref.prompt_ids, ...ids.slice(0, 10)], maxTokens: 6, sampler: greedy }))).toEqual(ids.slice(10, 16))
    expect(tokens(await drafter.propose({ context: [...ref.prompt_ids, ...ids.slice(0, 16)], maxTokens: 6, sampler: greedy }))).toEqual(ids.slice(16, 22))
    expect(tokens(await drafter.propose({ context: [...ref.prompt_ids, ...ids.slice(0, 3)], maxTokens: 2, sampler: greedy }))).toEqual(ids.slice(3, 5))
  })

  it('sampling: a token depends only on its context and seed, not on how it was asked for', async () => {
    const sampler = new Sampler({ temperature: 1, seed: 9 })
    const many = await new DraftModelDrafter(draft).propose({ context: ref.prompt_ids, maxTokens: 16, sampler })
    const oneByOne = new DraftModelDrafter(draft)
    const context = [...ref.prompt_ids]
    for (const d of many) {
      const [next] = await oneByOne.propose({ context, maxTokens: 1, sampler })
      expect(next?.token).toBe(d.token)
      expect(next?.q?.[d.token]).toBeCloseTo(d.q?.[d.token] as number, 6)
      context.push(d.token)
    }
    for (const [i, d] of many.entries()) {
      const q = d.q as Float64Array
      expect(d.confidence).toBe(Math.max(...q))
      // the alternatives are the verifier's next candidates at this position, in its order
      const taken = [d.token, ...keyedCandidates(q, d.token, 9, ref.prompt_ids.length + i)]
      expect(d.alternatives?.map(a => a.token)).toEqual(taken.slice(1))
      expect(taken).toHaveLength(SAMPLED_CANDIDATES)
    }
    const other = await new DraftModelDrafter(draft).propose({ context: ref.prompt_ids, maxTokens: 16, sampler: new Sampler({ temperature: 1, seed: 10 }) })
    expect(tokens(other)).not.toEqual(tokens(many))
  })

  it('sampling: a branch continues as propose would from the branch\'s own context', async () => {
    const sampler = new Sampler({ temperature: 1, seed: 5 })
    const context = [...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 8)]
    const forks = [{ at: ref.prompt_ids.length + 2, token: 7 }, { at: ref.prompt_ids.length + 5, token: 300 }]
    const branches = await new DraftModelDrafter(draft).continueBranches({ context, forks, length: 4, sampler })
    for (const [b, fork] of forks.entries()) {
      const own = await new DraftModelDrafter(draft).propose({ context: [...context.slice(0, fork.at), fork.token], maxTokens: 4, sampler })
      expect(branches[b]).toEqual(tokens(own))
    }
    // greedy continuations would be the argmax path instead
    expect(branches).not.toEqual(await new DraftModelDrafter(draft).continueBranches({ context, forks, length: 4 }))
  })

  it('branches grown level by level over scratch rows equal branches re-fed as whole trees, and leave the cache on the context', async () => {
    /** The same model without forwardMasked: continueBranches re-feeds the tree at every level. */
    const refeeding = { newSession: () => { const s = draft.newSession(); return { forward: s.forward.bind(s) } } }
    const context = [...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 12)]
    const n = context.length
    const cases = [
      { forks: [{ at: n - 9, token: 7 }, { at: n - 4, token: 300 }], length: 4 },
      { forks: [{ at: 1, token: 50 }, { at: n, token: 9 }], length: 3 }, // the first position and the end
      { forks: Array.from({ length: 8 }, (_, i) => ({ at: n - 1 - (i % 3), token: 100 + 11 * i })), length: 5 }, // several per position
      { forks: [{ at: n - 2, token: 77 }], length: 1 }
    ]
    for (const sampler of [undefined, new Sampler({ temperature: 1, seed: 4 })]) {
      for (const { forks, length } of cases) {
        const grown = new DraftModelDrafter(draft)
        const refed = new DraftModelDrafter(refeeding)
        const request = { context, forks, length, ...(sampler !== undefined ? { sampler } : {}) }
        const a = await grown.continueBranches(request)
        expect(a).toEqual(await refed.continueBranches(request))
        expect(a.every(branch => branch.length === length)).toBe(true)
        // the scratch rows are gone: what comes next is drafted from the context alone
        const next = { context: [...context, 5], maxTokens: 6, sampler: sampler ?? greedy }
        expect(tokens(await grown.propose(next))).toEqual(tokens(await new DraftModelDrafter(draft).propose(next)))
      }
    }
  })

  it('a proposal down a branch just drafted takes the branch\'s own row: no model run, the same draft', async () => {
    let runs = 0
    const counting = {
      newSession: () => {
        const s = draft.newSession() as Required<DraftSequence> // loadDraftModel's session keeps scratch rows
        return {
          forward: async (...a: Parameters<typeof s.forward>) => { runs++; return await s.forward(...a) },
          forwardMasked: async (...a: Parameters<typeof s.forwardMasked>) => { runs++; return await s.forwardMasked(...a) },
          truncate: (n: number) => { s.truncate(n) }
        }
      }
    }
    const context = [...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 12)]
    const forks = [{ at: context.length - 6, token: 7 }, { at: context.length - 2, token: 300 }]
    for (const sampler of [greedy, new Sampler({ temperature: 1, seed: 8 })]) {
      const drafter = new DraftModelDrafter(counting)
      const branches = await drafter.continueBranches({ context, forks, length: 4, sampler })
      for (const [b, fork] of forks.entries()) {
        const down = [...context.slice(0, fork.at), fork.token, ...(branches[b] as number[]).slice(0, 3)]
        const before = runs
        const [memo] = await drafter.propose({ context: down, maxTokens: 1, sampler })
        expect(runs).toBe(before) // the row after the branch's third token was drafted with it
        expect(memo?.token).toBe(branches[b]?.[3])
        const [fresh] = await new DraftModelDrafter(draft).propose({ context: down, maxTokens: 1, sampler })
        expect(memo?.token).toBe(fresh?.token)
        expect(memo?.alternatives?.map(a => a.token)).toEqual(fresh?.alternatives?.map(a => a.token))
        // past the branch's last token there is no row yet: the model runs
        await drafter.propose({ context: [...down, branches[b]?.[3] as number], maxTokens: 1, sampler })
        expect(runs).toBeGreaterThan(before)
      }
    }
  })

  it('drafts the same with the draft loaded as spans (LocalModel) as with loadDraftModel\'s one lean session', async () => {
    const spans = await LocalModel.load(Checkpoint.open(fixtureDir('stories260k-draft')))
    try {
      const perBlock = new DraftModelDrafter(spans)
      expect(tokens(await perBlock.propose({ context: ref.prompt_ids, maxTokens: 32, sampler: greedy }))).toEqual(ref.greedy_new_ids)
      const request = { context: [...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 8)], forks: [{ at: ref.prompt_ids.length + 2, token: 7 }, { at: ref.prompt_ids.length + 5, token: 300 }], length: 4 }
      expect(await perBlock.continueBranches(request)).toEqual(await new DraftModelDrafter(draft).continueBranches(request))
      const [a, b] = await Promise.all([perBlock.propose({ context: request.context, maxTokens: 8, sampler: greedy }), new DraftModelDrafter(draft).propose({ context: request.context, maxTokens: 8, sampler: greedy })])
      expect(a.map(d => d.alternatives?.map(x => x.token))).toEqual(b.map(d => d.alternatives?.map(x => x.token)))
      for (const [i, d] of a.entries()) expect(d.confidence).toBeCloseTo((b[i] as DraftToken).confidence, 5)
    } finally {
      await spans.release()
    }
  })

  it('loadDraftModel: a draft of any size runs whole in one session and drafts what its spans do', async () => {
    expect(draft).toBeInstanceOf(WholeModel)
    // one block of 2.4M parameters: past the tiny models' one-thread sessions
    const dir = join(mkdtempSync(join(tmpdir(), 'petal-draft-')), 'wide')
    writeRandomLlama({ out: dir, hiddenSize: 384, numLayers: 1, numHeads: 6, numKvHeads: 2, intermediateSize: 1536, vocabSize: 512, seed: 5 })
    const ckpt = Checkpoint.open(dir)
    const whole = await loadDraftModel(ckpt)
    const spans = await LocalModel.load(ckpt)
    try {
      expect(whole).toBeInstanceOf(WholeModel)
      const context = ref.prompt_ids
      const [a, b] = [await new DraftModelDrafter(whole).propose({ context, maxTokens: 8, sampler: greedy }), await new DraftModelDrafter(spans).propose({ context, maxTokens: 8, sampler: greedy })]
      expect(tokens(a)).toEqual(tokens(b))
      for (const [i, d] of a.entries()) expect(d.confidence).toBeCloseTo((b[i] as DraftToken).confidence, 5)
    } finally {
      await Promise.all([whole.release(), spans.release()])
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('stops after the first token under minConfidence', async () => {
    const drafts = await new DraftModelDrafter(draft).propose({ context: ref.prompt_ids, maxTokens: 32, sampler: greedy, minConfidence: 0.9 })
    expect(drafts.length).toBeLessThan(32)
    expect(drafts.slice(0, -1).every(d => d.confidence >= 0.9)).toBe(true)
    expect((drafts.at(-1) as DraftToken).confidence).toBeLessThan(0.9)
  })
})

describe('greedyBeliefs: the draft\'s belief in its pick and runners-up, straight from the logits', () => {
  it('equals the softmax probabilities, runners-up likeliest first, ties to the lower token id', () => {
    let seed = 7
    const random = (): number => { seed = (seed * 16807) % 2147483647; return seed / 2147483647 }
    for (let trial = 0; trial < 20; trial++) {
      const row = Float32Array.from({ length: 300 }, () => Math.round(random() * 40) / 4 - 5) // many ties
      const pick = argmax(row)
      const probs = softmax(Float64Array.from(row))
      const others = [...probs.keys()].filter(t => t !== pick).sort((a, b) => (probs[b] as number) - (probs[a] as number) || a - b).slice(0, 3)
      const got = greedyBeliefs(row, pick, 3)
      expect(got.confidence).toBeCloseTo(probs[pick] as number, 12)
      expect(got.alternatives.map(a => a.token)).toEqual(others)
      for (const a of got.alternatives) expect(a.confidence).toBeCloseTo(probs[a.token] as number, 12)
    }
  })

  it('leaves out the pick even when it is not the argmax (a repetition penalty moved it)', () => {
    const row = Float32Array.from([3, 1, 2, 0])
    const got = greedyBeliefs(row, 2, 2)
    expect(got.alternatives.map(a => a.token)).toEqual([0, 1])
  })
})
