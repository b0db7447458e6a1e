import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { GenerationResult } from '../../client/text-generation.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { writeRandomLlama } from '../../scripts/make-random-llama.js'
import { llama3StyleTokenizerJson } from '../helpers/byte-level-tokenizer.js'
import { fullyCovered, waitForServers } from '../helpers/swarm.js'

/** Greedy generation to the end; the final result. */
async function greedy (model: LanguageModel, prompt: string): Promise<GenerationResult> {
  const gen = model.generate(prompt, { maxNewTokens: 24, temperature: 0, stopAtEos: false })
  let step = await gen.next()
  while (step.done !== true) step = await gen.next()
  return step.value
}

// What a volunteer brings that the fixtures lack: a Qwen3-shaped checkpoint (head norms,
// head_dim apart from C / H, tied head) with a byte-level tokenizer laid out as Llama 3's.
describe('a Qwen3-shaped checkpoint with a byte-level tokenizer, served by two processes', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'petal-byo-')), 'tiny-qwen3')
  let swarm: LocalSwarm
  let client: SwarmClient
  beforeAll(async () => {
    writeRandomLlama({ out: dir, hiddenSize: 64, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 32, intermediateSize: 128, vocabSize: 300, tied: true, seed: 9, modelType: 'qwen3' })
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(llama3StyleTokenizerJson()))
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>', clean_up_tokenization_spaces: false }))
    swarm = new LocalSwarm(dir)
    await swarm.add({ blocks: '0:2' }, { blocks: '2:4' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'tiny-qwen3', 4, fullyCovered(4))
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await swarm?.close()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  it('generates through the swarm exactly what it generates locally, text included', async () => {
    const [local, remote] = await Promise.all([LanguageModel.local(dir), LanguageModel.swarm(client, dir)])
    try {
      const prompt = "the cat's 12345 naïve dogs\n"
      expect(local.encode(prompt)[0]).toBe(263) // <|begin_of_text|>, after 256 bytes and 7 merges
      const [want, got] = [await greedy(local, prompt), await greedy(remote, prompt)]
      expect(got.tokens).toEqual(want.tokens)
      expect(got.text).toBe(want.text)
      expect(got.stats.target.route.split(' -> ')).toHaveLength(2)
    } finally {
      await Promise.all([local.release(), remote.release()])
    }
  }, 60_000)
})
