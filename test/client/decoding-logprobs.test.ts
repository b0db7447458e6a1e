import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeAll, newLogprobLog, tokenLogprob, type DecodeMode, type DraftModel, type LogprobLog, type TokenLogprob } from '../../client/decoding/index.js'
import { LocalTarget } from '../../client/local-target.js'
import { forwardOnce } from '../../client/target-model.js'
import { Sampler } from '../../client/sampling/index.js'
import type { LocalModel } from '../../model/local-model.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { loadStories, makeDrafter, STORIES_REF, TrackingTarget, type DrafterKind } from '../helpers/decoding-fixtures.js'

/** The reference's logits after each prompt, computed by transformers. */
const LAST_PROMPT_LOGITS: number[][] = JSON.parse(readFileSync(join(BUNDLED_MODEL, 'reference.json'), 'utf8')).prompts.map((p: { last_prompt_logits: number[] }) => p.last_prompt_logits)

/** ln softmax(row)[token], in the most direct way (float64, no shift). */
function naiveLogprob (row: ArrayLike<number>, token: number): number {
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] as number)
  return (row[token] as number) - Math.log(sum)
}

describe('tokenLogprob', () => {
  it('is ln softmax, with the likeliest tokens first and lower ids first on ties', () => {
    const row = Float32Array.from([0.5, 2, -1, 2, 3, 0])
    const lp = tokenLogprob(row, 2, 4)
    expect(lp.token).toBe(2)
    expect(lp.logprob).toBeCloseTo(naiveLogprob(row, 2), 12)
    expect(lp.top.map(t => t.token)).toEqual([4, 1, 3, 0])
    for (const t of lp.top) expect(t.logprob).toBeCloseTo(naiveLogprob(row, t.token), 12)
    expect(tokenLogprob(row, 0, 0).top).toEqual([])
    expect(tokenLogprob(row, 0, 10).top).toHaveLength(6)
  })

  it('stays finite where exp overflows float64', () => {
    const row = Float32Array.from([1000, 999, -1000])
    expect(tokenLogprob(row, 1, 1).logprob).toBeCloseTo(-1 - Math.log1p(Math.exp(-1)), 12)
  })

  it('refuses tokens outside the vocabulary and bad top counts', () => {
    expect(() => tokenLogprob(new Float32Array(4), 4, 1)).toThrow(RangeError)
    expect(() => newLogprobLog(21)).toThrow('[0, 20]')
    expect(() => newLogprobLog(-1)).toThrow(RangeError)
  })
})

const CONFIGS: ReadonlyArray<{ mode: DecodeMode, drafter?: DrafterKind, branches?: number }> = [
  { mode: 'none' },
  { mode: 'sync', drafter: 'model' },
  { mode: 'sync', drafter: 'ngram' },
  { mode: 'pipelined', drafter: 'model', branches: 6 },
  { mode: 'pipelined', drafter: 'ngram' }
]

describe('decode records the target\'s log-probabilities', () => {
  let model: LocalModel
  let draft: DraftModel
  beforeAll(async () => { ({ model, draft } = await loadStories()) })
  afterAll(async () => { await Promise.all([model.release(), draft.release()]) })

  async function decodeLogged (promptIds: number[], config: typeof CONFIGS[number], sampler: Sampler, latencyMs: number): Promise<{ tokens: number[], log: LogprobLog, rejected: number }> {
    const log = newLogprobLog(5)
    const { tokens, stats } = await decodeAll(new LocalTarget(model, { oneWayLatencyMs: latencyMs }), {
      promptIds,
      sampler,
      maxNewTokens: 40,
      eosTokenIds: [],
      mode: config.mode,
      adaptive: false,
      branches: config.branches ?? 0,
      ...(config.drafter !== undefined ? { drafter: makeDrafter(config.drafter, draft) } : {}),
      logprobs: log
    })
    return { tokens, log, rejected: stats.verified - stats.accepted }
  }

  /** Every row of one forward pass over the whole text, as logprobs of the token after it. */
  async function oneShot (ids: number[]): Promise<TokenLogprob[]> {
    const rows = await forwardOnce(new LocalTarget(model), ids, 0)
    return ids.slice(1).map((next, i) => tokenLogprob(rows[i] as Float32Array, next, 5))
  }

  function expectClose (got: ReadonlyArray<TokenLogprob | undefined>, want: readonly TokenLogprob[], label: string): void {
    expect(got.length, label).toBe(want.length)
    for (const [i, w] of want.entries()) {
      const g = got[i] as TokenLogprob
      expect(g.token, `${label} #${i}`).toBe(w.token)
      expect(Math.abs(g.logprob - w.logprob), `${label} #${i}`).toBeLessThan(1e-4)
      expect(g.top.map(t => t.token), `${label} #${i}`).toEqual(w.top.map(t => t.token))
      for (const [j, t] of w.top.entries()) expect(Math.abs((g.top[j]?.logprob ?? NaN) - t.logprob), `${label} #${i} top ${j}`).toBeLessThan(1e-4)
    }
  }

  for (const [p, ref] of STORIES_REF.prompts.slice(0, 2).entries()) {
    it(`"${ref.prompt}", greedy: every mode logs what one pass over the text gives, and the first token matches transformers`, async () => {
      const results = await Promise.all(CONFIGS.map(async c => await decodeLogged(ref.prompt_ids, c, new Sampler({ temperature: 0 }), 3)))
      const want = await oneShot([...ref.prompt_ids, ...ref.greedy_new_ids.slice(0, 40)])
      const wantPrompt = want.slice(0, ref.prompt_ids.length - 1)
      const wantGenerated = want.slice(ref.prompt_ids.length - 1)
      for (const [i, { tokens, log }] of results.entries()) {
        const label = `${CONFIGS[i]?.mode}/${CONFIGS[i]?.drafter ?? '-'}`
        expect(tokens, label).toEqual(ref.greedy_new_ids.slice(0, 40))
        expectClose(log.generated, wantGenerated, label)
        expect(log.prompt[0], label).toBeUndefined()
        expectClose(log.prompt.slice(1), wantPrompt, `${label} prompt`)
        // greedy: the decided token is the likeliest
        for (const e of log.generated) expect(e.top[0]?.token).toBe(e.token)
      }
      // speculation was rejected somewhere, so rows re-fed and rolled back fed the log too
      expect(results.slice(1).some(r => r.rejected > 0)).toBe(true)
      const first = results[0]?.log.generated[0] as TokenLogprob
      const reference = LAST_PROMPT_LOGITS[p] as number[]
      expect(Math.abs(first.logprob - naiveLogprob(reference, first.token))).toBeLessThan(2e-4)
      for (const t of first.top) expect(Math.abs(t.logprob - naiveLogprob(reference, t.token))).toBeLessThan(2e-4)
    })
  }

  it('sampling at temperature 0.8 logs the model\'s own distribution, not the tempered one', async () => {
    const ref = STORIES_REF.prompts[2] as typeof STORIES_REF.prompts[number]
    const sampler = (): Sampler => new Sampler({ temperature: 0.8, seed: 7 })
    // (speculative sampling decodes another text from the seed than plain sampling: both follow p)
    for (const config of [{ mode: 'none' as const }, { mode: 'pipelined' as const, drafter: 'model' as const, branches: 6 }]) {
      const { tokens, log } = await decodeLogged(ref.prompt_ids, config, sampler(), 3)
      const want = (await oneShot([...ref.prompt_ids, ...tokens])).slice(ref.prompt_ids.length - 1)
      expectClose(log.generated, want, config.mode)
      // some sampled token was not the likeliest, so the log is not just the argmax's
      expect(log.generated.some(e => e.top[0]?.token !== e.token), config.mode).toBe(true)
    }
  })

  it('without a log, a run asks for logits only from its first row that decides something; the tokens are the same', async () => {
    const ref = STORIES_REF.prompts[1] as typeof STORIES_REF.prompts[number]
    for (const withLog of [false, true]) {
      const asked: Array<{ start: number, rows: number, logitsFrom: number | undefined }> = []
      const target = new TrackingTarget(new LocalTarget(model, { oneWayLatencyMs: 2 }), (ids, position, _parents, logitsFrom) => { asked.push({ start: position, rows: ids.length, logitsFrom }) })
      const { tokens } = await decodeAll(target, {
        promptIds: ref.prompt_ids, sampler: new Sampler({ temperature: 0 }), maxNewTokens: 24, eosTokenIds: [], mode: 'pipelined', drafter: makeDrafter('model', draft), branches: 4, ...(withLog ? { logprobs: newLogprobLog(0) } : {})
      })
      expect(tokens).toEqual(ref.greedy_new_ids.slice(0, 24))
      const first = asked[0] as typeof asked[number]
      // the prompt's rows decide nothing but the last one's: the head runs on it (and the drafts') alone
      expect(first.logitsFrom, `log ${withLog}`).toBe(withLog ? 0 : ref.prompt_ids.length - 1)
      for (const a of asked) expect(a.logitsFrom ?? 0).toBeLessThan(a.rows)
    }
  })
})
