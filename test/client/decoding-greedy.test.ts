import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, type DecodeMode, type DecodeStats, type DraftModel } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { forwardOnce } from '../../client/target-model.js'
import { argmax, Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { loadStories, makeDrafter, STORIES_REF, TrackingTarget, type DrafterKind } from '../helpers/decoding-fixtures.js'

const CONFIGS: ReadonlyArray<{ mode: DecodeMode, drafter?: DrafterKind, adaptive?: boolean, branches?: number }> = [
  { mode: 'none' },
  { mode: 'sync', drafter: 'model' },
  { mode: 'sync', drafter: 'ngram' },
  { mode: 'pipelined', drafter: 'model' },
  { mode: 'pipelined', drafter: 'ngram' },
  // Fixed plans keep 4 runs of 4 drafts in flight even where adapting would not (no latency).
  { mode: 'pipelined', drafter: 'model', adaptive: false },
  { mode: 'pipelined', drafter: 'ngram', adaptive: false },
  // Tree speculation: branches beside the least certain drafts.
  { mode: 'sync', drafter: 'model', branches: 4 },
  { mode: 'pipelined', drafter: 'model', branches: 4 },
  { mode: 'pipelined', drafter: 'model', adaptive: false, branches: 6 }
]
const label = (i: number): string => `${CONFIGS[i]?.mode}/${CONFIGS[i]?.drafter ?? '-'}${CONFIGS[i]?.adaptive === false ? '/fixed' : ''}${CONFIGS[i]?.branches !== undefined ? `/tree${CONFIGS[i]?.branches}` : ''}`

describe('greedy decoding equals the transformers reference in every mode', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  /** Decodes one prompt in every configuration at once (latency-bound runs overlap). */
  async function decodeEvery (promptIds: number[], oneWayLatencyMs: number): Promise<Array<{ tokens: number[], stats: DecodeStats }>> {
    return await Promise.all(CONFIGS.map(async ({ mode, drafter, adaptive, branches }) => await decodeAll(new LocalTarget(model, { oneWayLatencyMs }), {
      promptIds,
      adaptive,
      branches: branches ?? 0,
      sampler: new Sampler({ temperature: 0 }),
      maxNewTokens: 48,
      eosTokenIds: [],
      mode,
      ...(drafter !== undefined ? { drafter: makeDrafter(drafter, draft) } : {})
    })))
  }

  for (const latency of [0, 5]) {
    for (const p of STORIES_REF.prompts) {
      it(`"${p.prompt}", one-way latency ${latency} ms: 48 identical tokens in none, sync and pipelined with both drafters`, async () => {
        const results = await decodeEvery(p.prompt_ids, latency)
        for (const [i, { tokens, stats }] of results.entries()) {
          expect(tokens, label(i)).toEqual(p.greedy_new_ids)
          expect(stats.newTokens, label(i)).toBe(48)
          expect(stats.stopReason, label(i)).toBe('max-new-tokens')
          expect(stats.targetRuns.runsSent, label(i)).toBe(stats.runsSubmitted)
        }
        // Tree runs sent branches, and some rejected drafts were rescued by one (tokens decided
        // without a new run). Adaptive plans send branches only when their timings say so.
        for (const [i, { stats }] of results.entries()) {
          if (CONFIGS[i]?.branches === undefined) {
            expect(stats.branchRows, label(i)).toBe(0)
            continue
          }
          if (CONFIGS[i]?.adaptive !== false) continue
          expect(stats.branchRows, label(i)).toBeGreaterThan(0)
          expect(stats.rescued, label(i)).toBeGreaterThan(0)
          expect(stats.branchTokens, label(i)).toBeGreaterThanOrEqual(stats.rescued)
        }
        const plain = results[0]?.stats as DecodeStats
        expect(plain.runsSubmitted).toBe(48) // prefill, then one token per run
        expect(plain.proposed).toBe(0)

        for (const [i, { stats }] of results.entries()) {
          if (CONFIGS[i]?.mode !== 'pipelined') continue
          expect(stats.acceptanceRate, label(i)).toBeLessThan(1) // drafts were rejected
          expect(stats.verified, label(i)).toBeLessThanOrEqual(stats.proposed)
          // Rejections cancelled later runs (adaptive plans keep one run in flight when there is no
          // latency to hide; adaptive tree plans, rescuing rejections, may not meet one in 48 tokens).
          const adaptiveTree = CONFIGS[i]?.branches !== undefined && CONFIGS[i]?.adaptive !== false
          if (!adaptiveTree && (latency > 0 || CONFIGS[i]?.adaptive === false)) expect(stats.runsCancelled, label(i)).toBeGreaterThan(0)
        }
        // With latency, runs cancelled before they reach the model are never computed.
        const pipelined = results.filter((_, i) => CONFIGS[i]?.mode === 'pipelined').map(r => r.stats.targetRuns)
        if (latency > 0) {
          const computed = pipelined.reduce((n, t) => n + (t.runsComputed as number), 0)
          const sent = pipelined.reduce((n, t) => n + t.runsSent, 0)
          expect(computed).toBeLessThan(sent)
        }
      })
    }
  }

  it('at 5 ms one-way latency, speculation with the draft model beats plain decoding', async () => {
    const p = STORIES_REF.prompts[0] as StoriesPrompt
    const run = async (mode: DecodeMode): Promise<DecodeStats> => (await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 5 }), {
      promptIds: p.prompt_ids, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 48, eosTokenIds: [], mode, drafter: makeDrafter('model', draft)
    })).stats
    const none = await run('none')
    const sync = await run('sync')
    const pipelined = await run('pipelined')
    expect(sync.runsSubmitted).toBeLessThan(none.runsSubmitted)
    expect(sync.tokensPerSecond).toBeGreaterThan(1.5 * none.tokensPerSecond)
    expect(pipelined.tokensPerSecond).toBeGreaterThan(1.5 * none.tokensPerSecond)
    expect(pipelined.branchRows).toBeGreaterThan(0) // tree speculation is on by default where it applies
    console.log(JSON.stringify(Object.fromEntries([none, sync, pipelined].map(s => [s.mode, {
      tokPerS: Math.round(s.tokensPerSecond), acceptance: +s.acceptanceRate.toFixed(2), runs: s.runsSubmitted, cancelled: s.runsCancelled, itlP50Ms: +s.interTokenP50Ms.toFixed(1), itlP95Ms: +s.interTokenP95Ms.toFixed(1), ttftMs: +s.ttftMs.toFixed(1), plan: { k: s.plan.k, depth: s.plan.depth }
    }]))))
  })

  it('pipelined trees at 20 ms, 96 tokens: rescues happen and the output equals plain decoding', async () => {
    for (const p of STORIES_REF.prompts) {
      const opts = { promptIds: p.prompt_ids, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 96, eosTokenIds: [] }
      const plain = await decodeAll(new LocalTarget(model), { ...opts, mode: 'none' })
      const tree = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 20 }), {
        ...opts, mode: 'pipelined', drafter: makeDrafter('model', draft), k: 4, maxInFlight: 4, branches: 8, branchLength: 3, adaptive: false
      })
      expect(tree.tokens, p.prompt).toEqual(plain.tokens)
      expect(tree.stats.rescued, p.prompt).toBeGreaterThan(0)
      expect(tree.stats.branchTokens, p.prompt).toBeGreaterThanOrEqual(tree.stats.rescued)
    }
  })

  it('a long prompt goes out as a chain: branches only ride on decode-sized runs', async () => {
    const p = STORIES_REF.prompts[0] as StoriesPrompt
    const promptIds = Array.from({ length: 30 }, () => p.prompt_ids).flat().slice(0, 70) // 70 tokens
    const trees: boolean[] = []
    const inner = new LocalTarget(model, { oneWayLatencyMs: 5 })
    const target = new TrackingTarget(inner, (_ids, _position, parents) => { trees.push(parents !== undefined) })
    const opts = { promptIds, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 24, eosTokenIds: [] }
    const plain = await decodeAll(new LocalTarget(model), { ...opts, mode: 'none' })
    const tree = await decodeAll(target, { ...opts, mode: 'pipelined', drafter: makeDrafter('model', draft), branches: 8, adaptive: false })
    expect(promptIds).toHaveLength(70)
    expect(tree.tokens).toEqual(plain.tokens)
    expect(trees[0]).toBe(false) // the prompt's run
    expect(trees.slice(1)).toContain(true)
  })

  it('fixed plans (adaptive off) and other limits give the same tokens', async () => {
    const p = STORIES_REF.prompts[1] as StoriesPrompt
    for (const [k, maxInFlight] of [[1, 1], [2, 8], [8, 3]] as const) {
      for (const mode of ['sync', 'pipelined'] as const) {
        for (const drafter of ['model', 'ngram'] as const) {
          const { tokens } = await decodeAll(new LocalTarget(model), {
            promptIds: p.prompt_ids, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 48, eosTokenIds: [], mode, drafter: makeDrafter(drafter, draft), k, maxInFlight, adaptive: false
          })
          expect(tokens, `${mode}/${drafter} k ${k} depth ${maxInFlight}`).toEqual(p.greedy_new_ids)
        }
      }
    }
  })

  it('greedy with a repetition penalty: every mode gives the argmax of the penalized logits, token for token', async () => {
    const p = STORIES_REF.prompts[0] as StoriesPrompt
    const sampler = new Sampler({ temperature: 0, repetitionPenalty: 1.3 })
    // reference: one position at a time, argmax over the logits with the penalty applied by hand
    const seq = model.newSession()
    const ctx = [...p.prompt_ids]
    let rows = await seq.forward(ctx, 0)
    const expected: number[] = []
    for (let i = 0; i < 32; i++) {
      const scores = Float64Array.from(rows.at(-1) as Float32Array)
      for (const id of new Set(ctx)) scores[id] = (scores[id] as number) > 0 ? (scores[id] as number) / 1.3 : (scores[id] as number) * 1.3
      const token = argmax(scores)
      expected.push(token)
      ctx.push(token)
      rows = await seq.forward([token], ctx.length - 1)
    }
    expect(expected).not.toEqual(p.greedy_new_ids.slice(0, 32)) // the penalty changes the text
    for (const mode of ['none', 'sync', 'pipelined'] as const) {
      const { tokens } = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: 1 }), {
        promptIds: p.prompt_ids, sampler, maxNewTokens: 32, eosTokenIds: [], mode, drafter: makeDrafter('model', draft)
      })
      expect(tokens, mode).toEqual(expected)
    }
  })

  it('continues a sequence whose context the target already holds (contextIds), prompt empty or not', async () => {
    const p = STORIES_REF.prompts[2] as StoriesPrompt
    for (const cut of [4, p.prompt_ids.length]) {
      for (const mode of ['none', 'pipelined'] as const) {
        const target = new LocalTarget(model, { oneWayLatencyMs: 1 })
        await forwardOnce(target, p.prompt_ids.slice(0, cut), 0)
        const { tokens, stats } = await decodeAll(target, {
          contextIds: p.prompt_ids.slice(0, cut), promptIds: p.prompt_ids.slice(cut), sampler: new Sampler({ temperature: 0 }), maxNewTokens: 48, eosTokenIds: [], mode, drafter: makeDrafter('model', draft)
        })
        expect(tokens, `${mode}, ${cut} cached`).toEqual(p.greedy_new_ids)
        expect(stats.newTokens).toBe(48)
      }
    }
  })
})

type StoriesPrompt = (typeof STORIES_REF.prompts)[number]
