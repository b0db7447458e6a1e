import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decode, decodeAll, type DecodeMode, type DecodeOptions, type Drafter, type DraftModel } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { loadStories, makeDrafter, STORIES_REF, TrackingTarget } from '../helpers/decoding-fixtures.js'

const PROMPT = STORIES_REF.prompts[0] as (typeof STORIES_REF.prompts)[number]
const MODES: DecodeMode[] = ['none', 'sync', 'pipelined']

describe('decoding stops cleanly: no run is left in flight', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  function setup (mode: DecodeMode, extra: Partial<DecodeOptions> = {}): { target: TrackingTarget, opts: DecodeOptions } {
    const target = new TrackingTarget(new LocalTarget(model, { oneWayLatencyMs: 3 }))
    const opts: DecodeOptions = {
      promptIds: PROMPT.prompt_ids,
      sampler: new Sampler({ temperature: 0 }),
      maxNewTokens: 48,
      eosTokenIds: [],
      mode,
      drafter: makeDrafter('model', draft),
      ...extra
    }
    return { target, opts }
  }

  for (const mode of MODES) {
    it(`${mode}: EOS is yielded last, later runs are cancelled`, async () => {
      const eos = PROMPT.greedy_new_ids[20] as number
      const at = PROMPT.greedy_new_ids.indexOf(eos)
      const { target, opts } = setup(mode, { eosTokenIds: [eos] })
      const { tokens, stats } = await decodeAll(target, opts)
      expect(tokens).toEqual(PROMPT.greedy_new_ids.slice(0, at + 1))
      expect(stats.stopReason).toBe('eos')
      expect(target.inFlight()).toEqual([])
    })

    it(`${mode}: exactly maxNewTokens tokens`, async () => {
      for (const maxNewTokens of [1, 7]) {
        const { target, opts } = setup(mode, { maxNewTokens })
        const { tokens, stats } = await decodeAll(target, opts)
        expect(tokens).toEqual(PROMPT.greedy_new_ids.slice(0, maxNewTokens))
        expect(stats).toMatchObject({ newTokens: maxNewTokens, stopReason: 'max-new-tokens' })
        expect(target.inFlight()).toEqual([])
      }
    })

    it(`${mode}: abort while runs are in flight rejects with the reason and cancels them`, async () => {
      const controller = new AbortController()
      const { target, opts } = setup(mode, { signal: controller.signal })
      const gen = decode(target, opts)
      const first = await gen.next()
      expect(first.done).toBe(false)
      const reason = new Error('user stop')
      setTimeout(() => { controller.abort(reason) }, 4) // lands while a run is on its way
      await expect((async () => { for (;;) if ((await gen.next()).done === true) return })()).rejects.toBe(reason)
      expect(target.submitted.length).toBeGreaterThan(1)
      expect(target.inFlight()).toEqual([])
    })

    it(`${mode}: stopping iteration early (return) cancels the runs in flight`, async () => {
      const { target, opts } = setup(mode)
      const seen: number[] = []
      for await (const batch of decode(target, opts)) {
        seen.push(...batch)
        if (seen.length >= 3) break
      }
      expect(seen.slice(0, 3)).toEqual(PROMPT.greedy_new_ids.slice(0, 3))
      expect(target.inFlight()).toEqual([])
    })
  }

  it('an already aborted signal rejects at once with its reason and sends nothing', async () => {
    const reason = new Error('too late')
    const { target, opts } = setup('pipelined', { signal: AbortSignal.abort(reason) })
    await expect(decodeAll(target, opts)).rejects.toBe(reason)
    expect(target.submitted).toEqual([])
  })

  it('pipelined: cancelled runs that had not reached the model are never computed', async () => {
    // runs sent within one latency of the stop are still travelling: 20 ms leaves room for
    // slow drafting on a loaded machine (at 5 ms every run had landed once, in CI)
    const inner = new LocalTarget(model, { oneWayLatencyMs: 20 })
    const target = new TrackingTarget(inner)
    const { opts } = setup('pipelined', { eosTokenIds: [PROMPT.greedy_new_ids[30] as number] })
    const { stats } = await decodeAll(target, opts)
    expect(stats.runsCancelled).toBeGreaterThan(0)
    await new Promise(resolve => setTimeout(resolve, 30)) // let anything still travelling land
    const after = inner.stats()
    expect(after.runsComputed as number).toBeLessThan(after.runsSent)
    expect((after.runsComputed as number) + after.runsCancelled).toBe(after.runsSent)
  })

  it('a failing drafter fails the decode, and the runs in flight are cancelled', async () => {
    const inner = makeDrafter('model', draft)
    let calls = 0
    const failing: Drafter = {
      propose: async (request) => {
        if (++calls === 6) throw new Error('draft model crashed')
        return await inner.propose(request)
      }
    }
    const { target, opts } = setup('pipelined', { drafter: failing })
    await expect(decodeAll(target, opts)).rejects.toThrow('draft model crashed')
    expect(target.submitted.length).toBeGreaterThan(1)
    expect(target.inFlight()).toEqual([])
  })

  it('rejects bad options with a RangeError or TypeError', async () => {
    const { target, opts } = setup('sync')
    await expect(decodeAll(target, { ...opts, maxNewTokens: 0 })).rejects.toThrow(RangeError)
    await expect(decodeAll(target, { ...opts, promptIds: [] })).rejects.toThrow(RangeError)
    await expect(decodeAll(target, { ...opts, k: 0 })).rejects.toThrow(RangeError)
    await expect(decodeAll(target, { ...opts, branches: -1 })).rejects.toThrow(RangeError)
    await expect(decodeAll(target, { ...opts, branches: 64, branchLength: 64 })).rejects.toThrow('at most 960 fit beside a trunk')
    const { drafter: _omit, ...noDrafter } = opts
    await expect(decodeAll(target, noDrafter)).rejects.toThrow(TypeError)
  })
})
