import { execFile } from 'node:child_process'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { SwarmTarget } from '../../client/swarm/swarm-target.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { ClientParts } from '../../model/client-parts.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, fixtureDir, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'
import { fullyCovered, waitForServers } from '../helpers/swarm.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const EXAMPLE = fileURLToPath(new URL('../../scripts/example-sdk.ts', import.meta.url))

describe('stories260k through three server processes [0,2) [2,4) [4,5)', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  let model: LanguageModel
  const ref = readReference('stories260k')

  beforeAll(async () => {
    await swarm.add({ blocks: '0:2' }, { blocks: '2:4' }, { blocks: '4:5' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, fullyCovered(5))
    model = await LanguageModel.swarm(client, BUNDLED_MODEL)
  }, 60_000)
  afterAll(async () => {
    await model?.release()
    await client?.close()
    await swarm.close()
  })

  for (const push of [false, true]) {
    it(`greedy tokens equal the reference for every prompt (${push ? 'push' : 'client-mediated'})`, async () => {
      const m = push ? await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true }) : model
      for (const p of ref.prompts) {
        const gen = m.generate(p.prompt_ids, { maxNewTokens: p.greedy_new_ids.length, temperature: 0, stopAtEos: false })
        let step = await gen.next()
        while (step.done !== true) step = await gen.next()
        expect(step.value.tokens).toEqual(p.greedy_new_ids)
        expect(step.value.stats.target.route.split(' -> ')).toHaveLength(3)
      }
      if (push) await m.release()
    }, 60_000)
  }

  it('the README\'s SDK example runs against this swarm', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', EXAMPLE, swarm.bootstrap, BUNDLED_MODEL], { cwd: ROOT })
    expect(stdout).toMatch(/^Once upon a time/)
    expect(stdout).toMatch(/40 tokens, \d+ tokens\/s, route …\w{6}\[0,2\) -> …\w{6}\[2,4\) -> …\w{6}\[4,5\)/)
    expect(stdout).toContain('Lily and Ben went to the park.')
    expect(stdout).toMatch(/\[fork: 3 servers copied the caches, \d+ tokens\]/)
  }, 60_000)

  it('two clients generating at once through the same servers each get the reference tokens', async () => {
    const other = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(other, 'stories260k', 5, fullyCovered(5))
    const otherModel = await LanguageModel.swarm(other, BUNDLED_MODEL)
    const greedy = async (m: LanguageModel, p: { prompt_ids: number[], greedy_new_ids: number[] }): Promise<number[]> => {
      const gen = m.generate(p.prompt_ids, { maxNewTokens: p.greedy_new_ids.length, temperature: 0, stopAtEos: false })
      let step = await gen.next()
      while (step.done !== true) step = await gen.next()
      return step.value.tokens
    }
    const [a, b] = await Promise.all([greedy(model, ref.prompts[0]), greedy(otherModel, ref.prompts[1])])
    expect(a).toEqual(ref.prompts[0].greedy_new_ids)
    expect(b).toEqual(ref.prompts[1].greedy_new_ids)
    await otherModel.release()
    await other.close()
  }, 60_000)

  it('keeps the caches across turns of a chat session (only new tokens are sent)', async () => {
    const p = ref.prompts[0]
    const session = await model.session({ maxTokens: 256 })
    const turn = async (ids: number[], n: number): Promise<number[]> => {
      const gen = session.generate(ids, { maxNewTokens: n, temperature: 0, stopAtEos: false })
      let step = await gen.next()
      while (step.done !== true) step = await gen.next()
      return step.value.tokens
    }
    const first = await turn(p.prompt_ids, 20)
    const runsAfterFirst = session.target.stats().runsSent
    const second = await turn([], 28) // continue the story: nothing new but the pending token
    expect([...first, ...second]).toEqual(p.greedy_new_ids)
    // the second turn ran one token per run: no prompt was sent again
    expect(session.target.stats().runsSent - runsAfterFirst).toBe(28)
    await session.close()
  }, 60_000)
})

describe('tiny-llama-gqa through two server processes', () => {
  const dir = fixtureDir('tiny-llama-gqa')
  const swarm = new LocalSwarm(dir)
  let client: SwarmClient

  beforeAll(async () => {
    await swarm.add({ blocks: '0:3' }, { blocks: '3:6', args: ['--link-latency-ms', '0'] })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, basename(dir), 6, fullyCovered(6))
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('gives logits within 1e-4 of transformers at every position', async () => {
    const ref = readReference('tiny-llama-gqa')
    const parts = await ClientParts.load(Checkpoint.open(dir))
    const modelId = basename(dir)
    const target = await SwarmTarget.open({
      host: client.host, directory: await client.directory(modelId, 6), rediscover: async () => {}, parts, modelId, maxTokens: 64
    })
    const first = await target.submit(ref.kv_cache_check.chunks[0], 0).logits
    const second = await target.submit(ref.kv_cache_check.chunks[1], 7).logits
    expect(maxAbsDiffRows([...first, ...second], ref.logits)).toBeLessThan(1e-4)
    await target.close()
    // a run longer than one frame may carry goes as consecutive chunks: same logits
    const chunked = await SwarmTarget.open({
      host: client.host, directory: await client.directory(modelId, 6), rediscover: async () => {}, parts, modelId, maxTokens: 64, maxRunTokens: 5
    })
    expect(maxAbsDiffRows(await chunked.submit(ref.input_ids, 0).logits, ref.logits)).toBeLessThan(1e-4)
    await chunked.close()
    // float16 activations on the wire: half the bytes, logits within float16 rounding
    const half = await SwarmTarget.open({
      host: client.host, directory: await client.directory(modelId, 6), rediscover: async () => {}, parts, modelId, maxTokens: 64, wireDtype: 'float16'
    })
    const halfLogits = await half.submit(ref.input_ids, 0).logits
    const diff = maxAbsDiffRows(halfLogits, ref.logits)
    console.log(`[float16 wire] max |logit - reference| = ${diff.toExponential(2)}`)
    expect(diff).toBeLessThan(2e-2)
    await half.close()
    await parts.release()
  }, 60_000)
})
