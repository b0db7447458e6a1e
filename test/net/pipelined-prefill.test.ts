/**
 * A long prompt goes as chunks that follow one another along the route (pipeline
 * parallelism): the same logits as one run, every chunk computed once on every server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { MIN_PREFILL_CHUNK } from '../../client/swarm/prefill-plan.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import type { PetalServer } from '../../node/server.js'
import { CancelledError } from '../../protocol/errors.js'
import { BUNDLED_MODEL, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { generateGreedy, waitForServers } from '../helpers/swarm.js'

const ref = readReference('stories260k')
// three prompts and their reference stories, one after another: 150-odd tokens
const longIds: number[] = ref.prompts.flatMap((p: { prompt_ids: number[], greedy_new_ids: number[] }, i: number) => [...(i === 0 ? p.prompt_ids : p.prompt_ids.slice(1)), ...p.greedy_new_ids])

const computed = (servers: readonly PetalServer[]): number[] => servers.map(s => s.info().metrics?.runsComputed ?? 0)

describe('pipelined prefill through [0,2) [2,4) [4,5)', () => {
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  let chunked: LanguageModel
  let whole: LanguageModel
  beforeAll(async () => {
    client = await swarm.serving([[0, 2], [2, 4], [4, 5]])
    chunked = await LanguageModel.swarm(client, BUNDLED_MODEL, { pipelinePrefill: true }) // 'auto' would not: the servers share this host
    whole = await LanguageModel.swarm(client, BUNDLED_MODEL, { pipelinePrefill: false })
  }, 30_000)
  afterAll(async () => {
    await chunked?.release()
    await whole?.release()
    await swarm.close()
  })

  for (const push of [false, true]) {
    it(`${push ? 'push' : 'client-mediated'}: every row's logits as one run gives them, each chunk computed once a server`, async () => {
      const model = push ? await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true, pipelinePrefill: true }) : chunked
      expect(longIds.length).toBeGreaterThan(4 * MIN_PREFILL_CHUNK)
      const [a, b] = [await model.session(), await whole.session()]
      try {
        const before = computed(swarm.servers)
        const rows = await a.target.submit(longIds, 0).logits
        const chunks = computed(swarm.servers).map((n, i) => n - (before[i] as number))
        expect(new Set(chunks).size).toBe(1) // as many runs on every server
        expect(chunks[0]).toBe(Math.min(6, Math.floor(longIds.length / MIN_PREFILL_CHUNK)))
        const mid = computed(swarm.servers)
        const want = await b.target.submit(longIds, 0).logits
        expect(computed(swarm.servers).map((n, i) => n - (mid[i] as number))).toEqual([1, 1, 1])
        expect(rows).toHaveLength(longIds.length)
        expect(maxAbsDiffRows(rows, want)).toBeLessThan(1e-5)
        // a run that wants logits only from a row gets the others empty, as one run does
        const tail = await a.target.submit(longIds, 0, undefined, longIds.length - 3).logits
        expect(tail.map(r => r.length > 0)).toEqual(longIds.map((_, i) => i >= longIds.length - 3))
        expect(maxAbsDiffRows(tail.slice(-3), want.slice(-3))).toBeLessThan(1e-5)
      } finally {
        await Promise.all([a.close(), b.close()])
        if (push) await model.release()
      }
    }, 30_000)
  }

  it('greedy generation after a long prompt gives what one run of the prompt gives', async () => {
    const [got, want] = [await generateGreedy(chunked, longIds, 16), await generateGreedy(whole, longIds, 16)]
    expect(got.tokens).toEqual(want.tokens)
  }, 30_000)

  it('cancelling the run cancels its chunks: it rejects, and the servers drop what they had not started', async () => {
    const session = await chunked.session()
    try {
      const before = computed(swarm.servers)
      const run = session.target.submit(longIds, 0)
      session.target.cancel([run.runId])
      await expect(run.logits).rejects.toBeInstanceOf(CancelledError)
      await expect.poll(() => swarm.servers.every(s => (s.info().metrics?.queuedRuns ?? 0) === 0)).toBe(true)
      await new Promise(resolve => setTimeout(resolve, 100)) // a run that had started ends
      const after = computed(swarm.servers).map((n, i) => n - (before[i] as number))
      expect(after.reduce((x, y) => x + y, 0)).toBeLessThan(3 * 4) // not every chunk on every server
      expect(session.target.stats().runsCancelled).toBe(1)
      // the session goes on: a run from position 0 rebuilds the caches
      expect((await session.target.submit(longIds.slice(0, 40), 0).logits)).toHaveLength(40)
    } finally {
      await session.close()
    }
  }, 30_000)
})

describe('pipelined prefill when a server dies mid-prompt', () => {
  const swarm = new InProcessSwarm()
  afterAll(async () => { await swarm.close() })

  it('the broken span is re-routed and replayed; the tokens are what the local model gives', async () => {
    await swarm.start({ blocks: { start: 0, end: 2 } }) // everyone's bootstrap node: never stopped
    // a millisecond a row: each chunk takes tens of ms on [2,5), so the kill lands mid-prompt
    for (let i = 0; i < 2; i++) await swarm.start({ blocks: { start: 2, end: 5 }, simulatedCompute: { msPerRun: 0, msPerRow: 1 } })
    const client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { pipelinePrefill: true })
    const local = await LanguageModel.local(BUNDLED_MODEL)
    try {
      const session = await model.session()
      const gen = session.generate(longIds, { maxNewTokens: 12, temperature: 0, stopAtEos: false })
      const first = gen.next()
      await new Promise(resolve => setTimeout(resolve, 60))
      const route = (session.target as SwarmTarget).route
      const victim = swarm.servers.find(s => s.host.peerId.toString() === route.find(h => h.start === 2)?.peerId)
      expect(victim).toBeDefined()
      await victim?.host.stop() // its connections drop at once, as a killed process's do
      let step = await first
      const tokens: number[] = []
      while (step.done !== true) { tokens.push(...step.value.tokens); step = await gen.next() }
      expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
      // the kill landed while the prompt's chunks were in flight: fewer positions than the prompt's were replayed
      const replayed = Number(/replayed (\d+) positions/.exec(step.value.stats.target.routeChanges?.[0] ?? '')?.[1])
      expect(replayed).toBeLessThan(longIds.length - 1)
      expect(tokens).toEqual((await generateGreedy(local, longIds, 12)).tokens)
      await session.close()
    } finally {
      await model.release()
      await local.release()
    }
  }, 60_000)
})
