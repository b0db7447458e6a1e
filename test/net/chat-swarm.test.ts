/** A conversation through a swarm: the servers keep its caches between turns, and the replies are the local model's. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { GenerateChunk, GenerationResult } from '../../client/text-generation.js'
import { chatModelCopy } from '../helpers/chat-model.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'

const GREEDY = { maxNewTokens: 12, temperature: 0 }
const TURNS = ['Lily went to the park.', 'What did she find?', 'Who came to help?']

/** Each turn's result, and how many tokens the whole conversation up to its reply has. */
async function replies (model: LanguageModel): Promise<Array<GenerationResult & { wholeLength: number }>> {
  const conversation = await model.conversation({ system: 'Tell a story.' })
  const out: Array<GenerationResult & { wholeLength: number }> = []
  try {
    for (const turn of TURNS) {
      const wholeLength = conversation.promptIds({ role: 'user', content: turn }).length
      const stream: AsyncGenerator<GenerateChunk, GenerationResult> = conversation.say(turn, GREEDY)
      for (;;) {
        const next = await stream.next()
        if (next.done === true) { out.push({ ...next.value, wholeLength }); break }
      }
    }
  } finally {
    await conversation.close()
  }
  return out
}

describe('a conversation through a swarm', () => {
  const swarm = new InProcessSwarm()
  const dir = chatModelCopy()
  let client: SwarmClient
  beforeAll(async () => {
    client = await swarm.serving([[0, 3], [3, 5]])
  }, 30_000)
  afterAll(async () => {
    await swarm.close()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  for (const push of [false, true]) {
    it(`${push ? 'push mode' : 'client-mediated'}: three turns give the local model's replies, each sending only its new tokens`, async () => {
      const local = await LanguageModel.local(dir)
      const expected = await replies(local)
      await local.release()
      const remote = await LanguageModel.swarm(client, dir, { push })
      const got = await replies(remote)
      await remote.release()
      expect(got.map(r => r.tokens)).toEqual(expected.map(r => r.tokens))
      expect(got.map(r => r.promptTokens)).toEqual(expected.map(r => r.promptTokens))
      // a later turn never sends the earlier turns' prompts again: the servers held them
      for (const [i, later] of got.entries()) {
        if (i > 0) expect(later.promptTokens.length).toBeLessThanOrEqual(later.wholeLength - (got[i - 1]!.wholeLength))
      }
      expect(got.every(r => r.stats.target.failovers === 0)).toBe(true)
    }, 30_000)
  }
})
