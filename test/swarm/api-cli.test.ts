/** `petal-node api` through real server processes: OpenAI's API over the swarm, a conversation reusing its session. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { GenerationResult } from '../../client/text-generation.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { chatModelCopy } from '../helpers/chat-model.js'
import { CliProcesses, exited, untilReady, type CliProcess } from '../helpers/cli-process.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

async function post (url: string, body: unknown): Promise<any> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  expect(res.status).toBe(200)
  return await res.json()
}

async function text (stream: AsyncGenerator<unknown, GenerationResult>): Promise<string> {
  for (;;) {
    const next = await stream.next()
    if (next.done === true) return next.value.text
  }
}

describe('petal-node api through a swarm [0,3) [3,5)', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  const processes = new CliProcesses()
  const dir = chatModelCopy()
  let api: CliProcess
  let url: string
  let local: LanguageModel

  beforeAll(async () => {
    await swarm.add({ blocks: '0:3' }, { blocks: '3:5' })
    api = processes.run(['api', '--model', dir, '--bootstrap', swarm.bootstrap, '--listen', '127.0.0.1:0', '--coverage-wait', '20'])
    url = (await untilReady(api, /api ready (http:\/\/\S+\/v1)/, 60_000))[1] as string
    local = await LanguageModel.local(dir)
  }, 90_000)
  afterAll(async () => {
    processes.killAll()
    await local?.release()
    await swarm.close()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  it('completes as the local model does, through both servers', async () => {
    const got = await post(`${url}/completions`, { model: 'stories260k', prompt: 'Once upon a time', max_tokens: 32, temperature: 0 })
    expect(got.choices[0].text).toBe(await text(local.generate('Once upon a time', { maxNewTokens: 32, temperature: 0 })))
    expect(got.petal.route.split(' -> ')).toHaveLength(2)
  }, 30_000)

  it('a chat\'s second turn finds its conversation in the servers\' caches', async () => {
    const first = [{ role: 'user', content: 'Lily went to the park.' }]
    const one = await post(`${url}/chat/completions`, { messages: first, max_tokens: 16, temperature: 0 })
    const second = [...first, one.choices[0].message, { role: 'user', content: 'What did she find?' }]
    const two = await post(`${url}/chat/completions`, { messages: second, max_tokens: 16, temperature: 0 })
    const ids = local.tokenizer.encode(local.chatTemplate!.render(second), { addSpecialTokens: false })
    const session = await local.session()
    expect(two.choices[0].message.content).toBe(await text(session.continueWith(ids, { maxNewTokens: 16, temperature: 0 })))
    await session.close()
    expect(two.usage.prompt_tokens).toBe(ids.length)
    expect(two.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(one.usage.total_tokens - 2)
  }, 30_000)

  it('stops on SIGTERM with exit code 0', async () => {
    api.child.kill('SIGTERM')
    expect(await exited(api.child)).toBe(0)
  }, 30_000)
})
