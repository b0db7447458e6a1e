/**
 * Push mode with outputs carried (RunMessage.carry): a run's last server returns every
 * server's output in one result, instead of each server replying on its own. In-process
 * servers of stories260k on 127.0.0.1, greedy decoding.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { LanguageModel, type SwarmModelOptions } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { CARRY_SUGGESTED_BYTES, type SwarmTarget } from '../../client/swarm/swarm-target.js'
import type { GenerateChunk, GenerationResult } from '../../client/text-generation.js'
import type { PetalServer } from '../../node/server.js'
import { FrameSender } from '../../protocol/frame-sender.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm, killAbruptly } from '../helpers/in-process-swarm.js'

const ref = readReference('stories260k').prompts[0]
const GREEDY = { temperature: 0, stopAtEos: false } as const

async function drain (gen: AsyncGenerator<GenerateChunk, GenerationResult>): Promise<GenerationResult> {
  for (;;) {
    const step = await gen.next()
    if (step.done === true) return step.value
  }
}

describe('push mode carries the servers\' outputs to the last one', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient

  beforeAll(async () => {
    client = await swarm.serving([[0, 2], [2, 3], [3, 5]])
  }, 60_000)
  afterEach(() => { vi.restoreAllMocks() })
  afterAll(async () => {
    await swarm.close()
  })

  /** Generates the reference continuation; counts the `result` frames the servers send and the runs the client sends. */
  async function generateCounting (opts: SwarmModelOptions): Promise<{ tokens: number[], results: number, runs: number }> {
    const send = FrameSender.prototype.send
    let results = 0
    let runs = 0
    vi.spyOn(FrameSender.prototype, 'send').mockImplementation(function (this: FrameSender, message, bytes) {
      const type = (message as { type?: string }).type
      if (type === 'result') results++
      if (type === 'run') runs++
      return send.call(this, message, bytes)
    })
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, opts)
    const result = await drain(model.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, ...GREEDY }))
    await model.release()
    vi.restoreAllMocks()
    return { tokens: result.tokens, results, runs }
  }

  it('one result per run, from the last server, where every server answers without; tokens unchanged', async () => {
    const carried = await generateCounting({ push: true, carryMaxBytes: CARRY_SUGGESTED_BYTES })
    const replied = await generateCounting({ push: true })
    expect(carried.tokens).toEqual(ref.greedy_new_ids)
    expect(replied.tokens).toEqual(ref.greedy_new_ids)
    expect(carried.runs).toBe(replied.runs)
    expect(replied.results).toBe(3 * replied.runs)
    expect(carried.results).toBe(carried.runs)
  }, 60_000)
})

describe('push mode with carried outputs: a server on the route lost', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient

  beforeAll(async () => {
    // [2,3) three times: each test kills the one on its route, and another takes over
    client = await swarm.serving([[0, 2], [2, 3], [2, 3], [2, 3], [3, 5]])
  }, 60_000)
  afterAll(async () => {
    await swarm.close()
  })

  /** Kills the [2,3) server on `target`'s route; returns its peer id. */
  async function killRoutes23 (target: SwarmTarget): Promise<string | undefined> {
    const onRoute = target.route.find(h => h.start === 2)?.peerId
    await killAbruptly(swarm.servers.find(s => s.host.peerId.toString() === onRoute) as PetalServer)
    return onRoute
  }

  it('between turns: it is rebuilt from the outputs the last server carried back, and the next turn\'s tokens equal local decoding', async () => {
    const turns = [ref.prompt_ids, ref.greedy_new_ids.slice(0, 4)]
    const local = await LanguageModel.local(BUNDLED_MODEL)
    const expected: number[][] = []
    const localChat = await local.session({ maxTokens: 128 })
    for (const ids of turns) expected.push((await drain(localChat.generate(ids, { maxNewTokens: 12, ...GREEDY }))).tokens)
    await local.release()

    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true, carryMaxBytes: CARRY_SUGGESTED_BYTES, routeJitter: 0 })
    const chat = await model.session({ maxTokens: 128 })
    const target = chat.target as SwarmTarget
    const got = [(await drain(chat.generate(turns[0] as number[], { maxNewTokens: 12, ...GREEDY }))).tokens]
    const killed = await killRoutes23(target)
    const second = await drain(chat.generate(turns[1] as number[], { maxNewTokens: 12, ...GREEDY }))
    got.push(second.tokens)
    expect(got).toEqual(expected)
    expect(second.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(target.route.find(h => h.start === 2)?.peerId).not.toBe(killed)
    await chat.close()
    await model.release()
  }, 60_000)

  it('mid-generation: the runs it took down go on hop by hop from the first server, tokens unchanged', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true, carryMaxBytes: CARRY_SUGGESTED_BYTES, routeJitter: 0, sendDelayMs: 2 })
    const session = await model.session({ maxTokens: 128 })
    const target = session.target as SwarmTarget
    const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, ...GREEDY })
    let seen = 0
    let killing: Promise<string | undefined> | undefined
    let step = await gen.next()
    while (step.done !== true) {
      seen += step.value.tokens.length
      if (killing === undefined && seen >= 10) killing = killRoutes23(target)
      step = await gen.next()
    }
    const killed = await killing
    expect(step.value.tokens).toEqual(ref.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBe(1)
    expect(target.route.find(h => h.start === 2)?.peerId).not.toBe(killed)
    await session.close()
    await model.release()
  }, 60_000)
})
