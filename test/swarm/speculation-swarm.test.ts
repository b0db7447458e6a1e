import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Drafter, type DraftModel, DraftModelDrafter, loadDraftModel, NgramDrafter } from '../../client/decoding/index.js'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import type { GenerationResult, SpeculationMode } from '../../client/text-generation.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalSwarm, type ServerProcess } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, fixtureDir, readReference } from '../helpers/fixtures.js'
import { fullyCovered, peerIdOf, waitForServers } from '../helpers/swarm.js'

/**
 * Speculative decoding through real server processes with simulated WAN latency
 * (every frame a server or the client sends waits LATENCY ms): greedy output equals
 * plain greedy decoding in every mode, and rejections and cancellations happen.
 */
const LATENCY = 5

describe(`speculation through a 3-server swarm at ${LATENCY} ms one-way latency`, () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  let draftModel: DraftModel
  const ref = readReference('stories260k').prompts
  const latency = ['--link-latency-ms', String(LATENCY)]

  beforeAll(async () => {
    await swarm.add({ blocks: '0:2', args: latency }, { blocks: '2:4', args: latency }, { blocks: '4:5', args: latency }, { blocks: '2:5', args: latency })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => fullyCovered(5)(s) && s.length === 4)
    draftModel = await loadDraftModel(Checkpoint.open(fixtureDir('stories260k-draft')))
  }, 90_000)
  afterAll(async () => {
    await draftModel?.release()
    await client?.close()
    await swarm.close()
  })

  // [mode, drafter, push, branches per run (tree speculation)]
  const cases: Array<[SpeculationMode, 'draft' | 'ngram', boolean, number]> = [
    ['sync', 'draft', false, 0], ['pipelined', 'draft', false, 0], ['pipelined', 'draft', true, 0], ['pipelined', 'ngram', false, 0], ['sync', 'ngram', true, 0],
    ['sync', 'draft', false, 8], ['pipelined', 'draft', true, 8]
  ]
  for (const [mode, drafterKind, push, branches] of cases) {
    it(`${mode} with ${drafterKind === 'draft' ? 'the draft model' : 'n-gram lookup'}${push ? ', push' : ''}${branches > 0 ? `, ${branches} branches per run` : ''}: greedy tokens equal plain decoding`, async () => {
      const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push, sendDelayMs: LATENCY })
      let cancelled = 0
      let rejected = 0
      let rescued = 0
      for (const p of ref) {
        const drafter: Drafter = drafterKind === 'draft' ? new DraftModelDrafter(draftModel) : new NgramDrafter()
        const r = await run(model, p.prompt_ids, p.greedy_new_ids.length, mode, drafter, branches)
        expect(r.tokens).toEqual(p.greedy_new_ids)
        const d = r.stats.decode
        expect(d).toBeDefined()
        cancelled += d?.runsCancelled ?? 0
        rejected += (d?.verified ?? 0) - (d?.accepted ?? 0)
        rescued += d?.rescued ?? 0
        await drafter.close?.()
      }
      expect(rejected).toBeGreaterThan(0)
      if (mode === 'pipelined') expect(cancelled).toBeGreaterThan(0)
      // token trees crossed every server (and the pushes between them), and branches decided tokens
      if (branches > 0) expect(rescued).toBeGreaterThan(0)
      else expect(rescued).toBe(0)
      await model.release()
    }, 60_000)
  }

  it('sampled, pipelined with branches and push: the seed\'s text as a sync chain decodes it, with rescues', async () => {
    const chains = await LanguageModel.swarm(client, BUNDLED_MODEL, { sendDelayMs: LATENCY })
    const trees = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true, sendDelayMs: LATENCY })
    let rescued = 0
    for (const p of ref) {
      const sampled = { maxNewTokens: 40, temperature: 0.8, seed: 7, stopAtEos: false }
      const chain = await finish(chains.generate(p.prompt_ids, { ...sampled, speculation: 'sync', drafter: new DraftModelDrafter(draftModel), branches: 0 }))
      const tree = await finish(trees.generate(p.prompt_ids, { ...sampled, speculation: 'pipelined', drafter: new DraftModelDrafter(draftModel), branches: 8, k: 4, maxInFlight: 4 }))
      expect(tree.tokens).toEqual(chain.tokens)
      expect(tree.stats.decode?.branchRows).toBeGreaterThan(0)
      rescued += tree.stats.decode?.rescued ?? 0
    }
    expect(rescued).toBeGreaterThan(0)
    await Promise.all([chains.release(), trees.release()])
  }, 60_000)

  it('pipelined tree decoding survives a server killed mid-generation', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { sendDelayMs: LATENCY })
    const session = await model.session({ maxTokens: 128 })
    const target = session.target as SwarmTarget
    const p = ref[1]
    const gen = session.generate(p.prompt_ids, { maxNewTokens: p.greedy_new_ids.length, temperature: 0, stopAtEos: false, speculation: 'pipelined', drafter: new DraftModelDrafter(draftModel), branches: 8 })
    let victim: ServerProcess | undefined
    let step = await gen.next()
    while (step.done !== true) {
      if (victim === undefined && step.value.tokens.length > 0) {
        const onRoute = target.route.map(h => swarm.servers.find(s => peerIdOf(s.address) === h.peerId))
        victim = onRoute.find(s => s !== undefined && s.blocks !== '0:2')
        victim?.child.kill('SIGKILL')
      }
      step = await gen.next()
    }
    expect(victim).toBeDefined()
    expect(step.value.tokens).toEqual(p.greedy_new_ids)
    expect(step.value.stats.target.failovers).toBeGreaterThanOrEqual(1)
    expect(step.value.stats.decode?.branchRows).toBeGreaterThan(0)
    await session.close()
    await model.release()
  }, 60_000)
})

async function run (model: LanguageModel, prompt: number[], n: number, speculation: SpeculationMode, drafter: Drafter, branches = 0): Promise<GenerationResult> {
  return await finish(model.generate(prompt, { maxNewTokens: n, temperature: 0, stopAtEos: false, speculation, drafter, branches }))
}

/** Runs a generation to its end: the final result. */
async function finish (gen: AsyncGenerator<unknown, GenerationResult>): Promise<GenerationResult> {
  let step = await gen.next()
  while (step.done !== true) step = await gen.next()
  return step.value
}
