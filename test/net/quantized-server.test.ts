/** A server holding int4 blocks: it says so, it computes what a local int4 model computes, and clients may refuse it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { formatStatus } from '../../cli/status-format.js'
import type { PetalServer } from '../../node/server.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { generateGreedy, peerIdOf, waitForServers } from '../helpers/swarm.js'

const PROMPT = [1, 403, 407, 261, 378] // "Once upon a time"

describe('a server started with quantization int4', () => {
  const swarm = new InProcessSwarm()
  let quantized: PetalServer
  let client: SwarmClient
  beforeAll(async () => {
    quantized = await swarm.start({ blocks: { start: 0, end: 5 }, quantization: 'int4' })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, servers => servers.length === 1)
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('announces int4, and generates the tokens of a local int4 model', async () => {
    const servers = await client.refresh('stories260k', 5)
    expect(servers[0]?.info.quantization).toBe('int4')
    expect(formatStatus([{ modelId: 'stories260k', numBlocks: 5, servers }])).toMatch(/\[0,5\) +online .* cpu int4 /)
    const local = await LanguageModel.local(BUNDLED_MODEL, { quantization: 'int4' })
    const expected = await generateGreedy(local, PROMPT, 24)
    await local.release()
    // int4 leaves float32's greedy path at token 16 of this prompt: equal tokens mean int4 compute
    const float = await LanguageModel.local(BUNDLED_MODEL)
    expect((await generateGreedy(float, PROMPT, 24)).tokens).not.toEqual(expected.tokens)
    await float.release()
    const remote = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const got = await generateGreedy(remote, PROMPT, 24)
    await remote.release()
    expect(got.tokens).toEqual(expected.tokens)
    expect(got.stats.target.route).toContain(peerIdOf(quantized.address).slice(-6))
    expect(got.stats.target.quantizedHops).toEqual([`${got.stats.target.route} int4`])
  }, 30_000)

  it('a client asking for exact weights refuses it, naming why, and takes a float32 server once there is one', async () => {
    const exact = await LanguageModel.swarm(client, BUNDLED_MODEL, { exactWeightsOnly: true })
    await expect(generateGreedy(exact, PROMPT, 4)).rejects.toThrow(/no reachable server holds blocks 0, 1, 2, 3, 4.*\(int4\).*weights differ/)
    // the choice is the model's own: another model of the same client still takes the int4 server
    const any = await LanguageModel.swarm(client, BUNDLED_MODEL)
    expect((await generateGreedy(any, PROMPT, 4)).stats.target.quantizedHops).toHaveLength(1)
    await any.release()
    const float = await swarm.start({ blocks: { start: 0, end: 5 } })
    await waitForServers(client, 'stories260k', 5, servers => servers.length === 2)
    const local = await LanguageModel.local(BUNDLED_MODEL)
    const expected = await generateGreedy(local, PROMPT, 24)
    await local.release()
    const got = await generateGreedy(exact, PROMPT, 24)
    expect(got.tokens).toEqual(expected.tokens)
    expect(got.stats.target.route).toContain(peerIdOf(float.address).slice(-6))
    expect(got.stats.target.quantizedHops).toBeUndefined()
    await exact.release()
  }, 30_000)
})

describe('a swarm client holding its embedding and head in 8 bits', () => {
  const swarm = new InProcessSwarm()
  afterAll(async () => { await swarm.close() })

  it('generates the reference tokens through float32 servers', async () => {
    await swarm.start({ blocks: { start: 0, end: 5 } })
    const client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, servers => servers.length === 1)
    const ref = readReference('stories260k').prompts as Array<{ prompt_ids: number[], greedy_new_ids: number[] }>
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { clientQuantization: 'int8' })
    for (const p of ref) expect((await generateGreedy(model, p.prompt_ids, p.greedy_new_ids.length)).tokens).toEqual(p.greedy_new_ids)
    await model.release()
  }, 30_000)
})
