/** Sessions decoding at once on one server share passes over its weights; their tokens stay their own. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { OpenAiServer } from '../../client/openai/openai-server.js'
import { MIN_SHARED_TOKENS } from '../../client/openai/completion-request.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { DraftModelDrafter, loadDraftModel } from '../../client/decoding/index.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { BUNDLED_MODEL, fixtureDir, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { generateGreedy } from '../helpers/swarm.js'

const ref = readReference('stories260k')
const prompts: number[][] = ref.prompts.map((p: { prompt_ids: number[] }) => p.prompt_ids)
const expected: number[][] = ref.prompts.map((p: { greedy_new_ids: number[] }) => p.greedy_new_ids)

describe('batched decode on one server [0,5)', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  beforeAll(async () => {
    client = await swarm.serving([[0, 5]])
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('pipelined speculation of four clients at once (runs cancelled inside batches) gives plain decoding\'s tokens', async () => {
    const draft = await loadDraftModel(Checkpoint.open(fixtureDir('stories260k-draft')))
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { sendDelayMs: 1 })
    const before = swarm.servers[0]?.info().metrics
    const runs = [...prompts, prompts[0] as number[]].map(async p => {
      const gen = model.generate(p, { maxNewTokens: 48, temperature: 0, stopAtEos: false, speculation: 'pipelined', drafter: new DraftModelDrafter(draft), maxInFlight: 4 })
      for (;;) {
        const step = await gen.next()
        if (step.done === true) return step.value
      }
    })
    const got = await Promise.all(runs)
    expect(got.map(r => r.tokens)).toEqual([...expected, expected[0]])
    expect(got.some(r => (r.stats.decode?.runsCancelled ?? 0) > 0)).toBe(true)
    const after = swarm.servers[0]?.info().metrics
    expect((after?.runsBatched ?? 0) - (before?.runsBatched ?? 0)).toBeGreaterThan(0)
    await model.release()
    await draft.release()
  }, 60_000)

  it('six generations at once give the reference tokens, and the server computed runs together', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const jobs = [...prompts, ...prompts].map(async p => await generateGreedy(model, p, 48))
    const got = await Promise.all(jobs)
    expect(got.map(r => r.tokens)).toEqual([...expected, ...expected])
    await model.release()
    const [server] = await client.refresh('stories260k', 5)
    // the sessions' steps overlap, so some were packed into one run (not all: each session's first run is its prompt)
    expect(server?.info.metrics?.runsBatched).toBeGreaterThan(0)
    expect(swarm.servers[0]?.info().metrics?.runsBatched).toBe(server?.info.metrics?.runsBatched)
  }, 60_000)

  it('an API request for n choices generates them together: the prompt computed once, each the reference, runs batched', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const api = await OpenAiServer.listen({ model, modelId: 'stories260k' }, { port: 0 })
    try {
      const before = swarm.servers[0]?.info().metrics?.runsBatched ?? 0
      const adoptedBefore = swarm.servers[0]?.info().metrics?.prefixesAdopted ?? 0
      const res = await fetch(`${api.url}/completions`, { method: 'POST', body: JSON.stringify({ prompt: prompts[0], max_tokens: 48, temperature: 0, n: 4 }) })
      const body = await res.json() as { choices: Array<{ text: string }> }
      // the reference continuation starts with ",": its text is the plain decode of its ids
      const want = model.tokenizer.decode(expected[0] as number[], { skipSpecialTokens: true })
      expect(body.choices.map(c => c.text)).toEqual([want, want, want, want])
      expect((swarm.servers[0]?.info().metrics?.runsBatched ?? 0) - before).toBeGreaterThan(0)
      expect(swarm.servers[0]?.info().metrics?.prefixesAdopted ?? 0).toBe(adoptedBefore) // a short prompt: each choice computes it
      // a long prompt is computed once: choices 1..3 copy it from choice 0's session on the server
      const long = [...(prompts[1] as number[]), ...(expected[1] as number[])] // a prompt and its reference story: no pooled session holds it
      expect(long.length).toBeGreaterThan(MIN_SHARED_TOKENS)
      const sdk = await generateGreedy(model, long, 24)
      const computedBefore = swarm.servers[0]?.info().metrics?.runsComputed ?? 0
      const res2 = await fetch(`${api.url}/completions`, { method: 'POST', body: JSON.stringify({ prompt: long, max_tokens: 24, temperature: 0, n: 4 }) })
      const body2 = await res2.json() as { choices: Array<{ text: string }> }
      expect(body2.choices.map(c => c.text)).toEqual(Array(4).fill(sdk.text))
      expect((swarm.servers[0]?.info().metrics?.prefixesAdopted ?? 0) - adoptedBefore).toBe(3)
      // choice 0: the prompt and 23 decode runs; the others copied the prompt with its last logits: 23 each
      expect((swarm.servers[0]?.info().metrics?.runsComputed ?? 0) - computedBefore).toBe(24 + 3 * 23)
    } finally {
      await api.close()
      await model.release()
    }
  }, 60_000)
})

describe('batched decode along a push route [0,3) -> [3,5)', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  beforeAll(async () => {
    client = await swarm.serving([[0, 3], [3, 5]])
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('six generations at once in push mode give the reference tokens; both servers batch what reaches them', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true })
    const got = await Promise.all([...prompts, ...prompts].map(async p => await generateGreedy(model, p, 48)))
    expect(got.map(r => r.tokens)).toEqual([...expected, ...expected])
    await model.release()
    for (const server of swarm.servers) expect(server.info().metrics?.runsBatched).toBeGreaterThan(0)
  }, 60_000)
})
