/** The API over a swarm that does not cover the model: a clear 503, and the server goes on serving. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { OpenAiServer } from '../../client/openai/openai-server.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
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
})
