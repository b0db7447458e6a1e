/**
 * A session takes another's prefix from the servers' caches (adopt) instead of computing it:
 * the choices of one prompt, a forked conversation. Three servers [0,2) [2,4) [4,5).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel, type ChatSession } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { GenerationResult } from '../../client/text-generation.js'
import type { PetalServer } from '../../node/server.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'

const ref = readReference('stories260k')
const promptIds: number[] = ref.prompts[0].prompt_ids
const expected: number[] = ref.prompts[0].greedy_new_ids

async function greedy (session: ChatSession, ids: readonly number[], n: number): Promise<GenerationResult> {
  const gen = session.continueWith(ids, { maxNewTokens: n, temperature: 0, stopAtEos: false })
  for (;;) {
    const step = await gen.next()
    if (step.done === true) return step.value
  }
}

/** Runs computed and prefixes adopted, all servers together. */
function counts (servers: readonly PetalServer[]): { computed: number, adopted: number } {
  const metrics = servers.map(s => s.info().metrics)
  return {
    computed: metrics.reduce((n, m) => n + (m?.runsComputed ?? 0), 0),
    adopted: metrics.reduce((n, m) => n + (m?.prefixesAdopted ?? 0), 0)
  }
}

describe('adopting a prefix through a swarm of three servers', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  let model: LanguageModel
  beforeAll(async () => {
    client = await swarm.serving([[0, 2], [2, 4], [4, 5]])
    model = await LanguageModel.swarm(client, BUNDLED_MODEL)
  }, 30_000)
  afterAll(async () => {
    await model?.release()
    await swarm.close()
  })

  it('copies the prompt on every server: nothing computed for it, the reference tokens after it', async () => {
    const [a, b] = [await model.session(), await model.session()]
    try {
      await a.prefill(promptIds)
      const before = counts(swarm.servers)
      expect(await b.adopt(a)).toBe(true)
      const after = counts(swarm.servers)
      expect(after.computed).toBe(before.computed)
      expect(after.adopted).toBe(before.adopted + 3)
      expect(b.target.stats()).toMatchObject({ hopsAdopted: 3, hopsReplayed: 0 })
      expect(b.tokens).toEqual(promptIds)
      const [fromB, fromA] = [await greedy(b, promptIds, 24), await greedy(a, promptIds, 24)]
      expect(fromB.tokens).toEqual(expected.slice(0, 24))
      expect(fromB.promptTokens).toEqual(promptIds.slice(-1)) // only the last prompt token was sent
      expect(fromA.tokens).toEqual(expected.slice(0, 24))
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  }, 30_000)

  it('forks a conversation: each branch goes on as a session fed the whole sequence would', async () => {
    const chat = await model.session()
    const fresh = await model.session()
    try {
      const first = await greedy(chat, promptIds, 12)
      const fork = await chat.fork()
      try {
        expect(fork.tokens).toEqual(chat.tokens)
        expect(fork.target.stats()).toMatchObject({ hopsAdopted: 3 })
        // the branches part: each gets a different next turn
        const [turnA, turnB] = [[403, 407], [261, 378]]
        const onChat = await greedy(chat, [...chat.tokens, ...turnA], 8)
        const onFork = await greedy(fork, [...fork.tokens, ...turnB], 8)
        expect(onFork.promptTokens.length).toBe(turnB.length + 1) // the fork held the history
        const whole = await greedy(fresh, [...promptIds, ...first.tokens, ...turnB], 8)
        expect(onFork.tokens).toEqual(whole.tokens)
        expect(onChat.tokens).toEqual((await greedy(fresh, [...promptIds, ...first.tokens, ...turnA], 8)).tokens)
      } finally {
        await fork.close()
      }
    } finally {
      await Promise.all([chat.close(), fresh.close()])
    }
  }, 30_000)

  it('a session of another client is not copied: its servers refuse, and the prefix is replayed hop by hop', async () => {
    const otherClient = await swarm.connect()
    const other = await LanguageModel.swarm(otherClient, BUNDLED_MODEL)
    const a = await model.session()
    const b = await other.session()
    try {
      await a.prefill(promptIds)
      const before = counts(swarm.servers)
      expect(await b.adopt(a)).toBe(true)
      expect(b.target.stats()).toMatchObject({ hopsAdopted: 0, hopsReplayed: 3 })
      const after = counts(swarm.servers)
      expect(after.adopted).toBe(before.adopted)
      expect(after.computed).toBe(before.computed + 3) // one replay run a server
      expect((await greedy(b, promptIds, 16)).tokens).toEqual(expected.slice(0, 16))
    } finally {
      await Promise.all([a.close(), b.close()])
      await other.release()
    }
  }, 30_000)

  it('generateMany: the prompt computed once, copied to the other sessions on every server with its last logits; each the reference', async () => {
    const before = counts(swarm.servers)
    const results = await model.generateMany(promptIds, 3, { maxNewTokens: 16, temperature: 0, stopAtEos: false })
    expect(results.map(r => r.tokens)).toEqual(Array(3).fill(expected.slice(0, 16)))
    const after = counts(swarm.servers)
    expect(after.adopted - before.adopted).toBe(2 * 3) // two sessions, three servers
    // on each server: the prompt's one run, then 15 runs per session for tokens 2..16; the
    // others' first token comes from the prompt run's logits, copied with the caches
    expect(after.computed - before.computed).toBe(3 * (1 + 3 * 15))
  }, 30_000)
})
