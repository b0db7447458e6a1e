/**
 * The API over a swarm that does not cover the model: a clear 503, and the server goes on
 * serving; then logprobs through the swarm, equal to a local model's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NgramDrafter, type TokenLogprob } from '../../client/decoding/index.js'
import { LanguageModel } from '../../client/language-model.js'
import { OpenAiServer } from '../../client/openai/openai-server.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { sdkResult } from '../helpers/openai-http.js'
import { waitForServers } from '../helpers/swarm.js'

describe('the API over a swarm missing blocks', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  let model: LanguageModel
  let api: OpenAiServer
  beforeAll(async () => {
    await swarm.start({ blocks: { start: 0, end: 3 } })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, servers => servers.length === 1)
    model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    api = await OpenAiServer.listen({ model, modelId: 'stories260k' }, { port: 0 })
  }, 30_000)
  afterAll(async () => {
    await api?.close()
    await model?.release()
    await swarm.close()
  })

  it('answers 503 naming the blocks no server holds, and serves once a server holds them', async () => {
    const ask = async (): Promise<Response> => await fetch(`${api.url}/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }) })
    const refused = await ask()
    const body = await refused.json() as { error: { code: string, message: string } }
    expect([refused.status, body.error.code]).toEqual([503, 'swarm_unavailable'])
    expect(body.error.message).toMatch(/no reachable server holds blocks 3, 4/)
    await swarm.start({ blocks: { start: 3, end: 5 } })
    await waitForServers(client, 'stories260k', 5, servers => servers.length === 2)
    const served = await ask()
    expect(served.status).toBe(200)
    expect(((await served.json()) as { petal: { route: string } }).petal.route.split(' -> ')).toHaveLength(2)
  }, 30_000)

  it('(then, covered) logprobs and prompt scores through the swarm equal a local model\'s, speculative or not', async () => {
    const local = await LanguageModel.local(BUNDLED_MODEL)
    try {
      const text = 'Once upon a time, there was a little dog named Max.'
      const [viaSwarm, here] = [await model.score(text, { top: 3 }), await local.score(text, { top: 3 })]
      expectEntriesClose(viaSwarm.logprobs, here.logprobs)
      const res = await fetch(`${api.url}/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Lily and Ben', max_tokens: 16, temperature: 0, logprobs: 2 }) })
      const api200 = (await res.json()) as { choices: Array<{ logprobs: { token_logprobs: number[] } }> }
      const opts = { temperature: 0, maxNewTokens: 16, logprobs: 2 }
      const want = (await sdkResult(local.generate('Lily and Ben', opts))).logprobs!
      const got = api200.choices[0]!.logprobs.token_logprobs
      expect(got).toHaveLength(16)
      for (const [i, w] of want.entries()) expect(Math.abs((got[i] as number) - w.logprob)).toBeLessThan(1e-4)
      // pipelined speculation through the swarm logs the same numbers
      const speculative = await sdkResult(model.generate('Lily and Ben', { ...opts, speculation: 'pipelined', drafter: new NgramDrafter() }))
      expectEntriesClose(speculative.logprobs!, want)
    } finally {
      await local.release()
    }
  }, 30_000)
})

/** Two lists of entries: same tokens and alternatives, logprobs within 1e-4 (float32 over the wire). */
function expectEntriesClose (got: ReadonlyArray<TokenLogprob | undefined>, want: ReadonlyArray<TokenLogprob | undefined>): void {
  expect(got).toHaveLength(want.length)
  for (const [i, w] of want.entries()) {
    const g = got[i]
    if (w === undefined || g === undefined) { expect(g).toBe(w); continue }
    expect([g.token, g.top.map(t => t.token)]).toEqual([w.token, w.top.map(t => t.token)])
    expect(Math.abs(g.logprob - w.logprob)).toBeLessThan(1e-4)
    for (const [j, t] of w.top.entries()) expect(Math.abs((g.top[j] as { logprob: number }).logprob - t.logprob)).toBeLessThan(1e-4)
  }
}
