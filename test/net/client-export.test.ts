/** A client folder without blocks (petal-node export-client) generates through a swarm, and still checks the servers' weights. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { CLIENT_MANIFEST, exportClientParts, readClientManifest } from '../../model/client-export.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { generateGreedy } from '../helpers/swarm.js'

describe('client parts exported from a checkpoint', () => {
  const ref = readReference('stories260k').prompts[0] as { prompt_ids: number[], greedy_new_ids: number[] }
  const root = mkdtempSync(join(tmpdir(), 'petal-export-'))
  const out = join(root, 'client-only') // another folder name than the servers': the model id comes from the manifest
  const swarm = new InProcessSwarm()
  let client: SwarmClient
  beforeAll(async () => {
    client = await swarm.serving([[0, 3], [3, 5]])
  }, 30_000)
  afterAll(async () => {
    await swarm.close()
    rmSync(root, { recursive: true, force: true })
  })

  it('holds the client tensors, the small files and the blocks\' hashes, and no block', () => {
    const result = exportClientParts(BUNDLED_MODEL, out)
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    expect(result.manifest).toEqual({ modelId: 'stories260k', numBlocks: 5, blockHashes: Array.from({ length: 5 }, (_, i) => ckpt.blockWeightsHash(i)) })
    expect(readClientManifest(out)).toEqual(result.manifest)
    expect(result.copied).toEqual(expect.arrayContaining(['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']))
    const exported = Checkpoint.open(out)
    expect(exported.hasBlock(0)).toBe(false)
    expect(exported.readClientWeights().embedding).toEqual(ckpt.readClientWeights().embedding)
    expect(result.clientBytes).toBeLessThan(result.checkpointBytes)
    expect(() => exportClientParts(BUNDLED_MODEL, out)).toThrow(/not empty/)
  })

  it('generates the reference tokens through the swarm, under the manifest\'s model id', async () => {
    const model = await LanguageModel.swarm(client, out)
    const got = await generateGreedy(model, ref.prompt_ids, ref.greedy_new_ids.length)
    await model.release()
    expect(got.tokens).toEqual(ref.greedy_new_ids)
    expect(got.stats.target.route.split(' -> ')).toHaveLength(2)
  }, 30_000)

  it('refuses servers whose weights hash otherwise than the manifest says, unless told not to check', async () => {
    const tampered = join(root, 'tampered')
    exportClientParts(BUNDLED_MODEL, tampered)
    const file = join(tampered, CLIENT_MANIFEST)
    const manifest = JSON.parse(readFileSync(file, 'utf8'))
    manifest.blockHashes[4] = '0'.repeat(64)
    writeFileSync(file, JSON.stringify(manifest))
    const checked = await LanguageModel.swarm(client, tampered)
    await expect(generateGreedy(checked, ref.prompt_ids, 4)).rejects.toThrow(/no reachable server holds blocks 3, 4.*weights differ/)
    await checked.release()
    const unchecked = await LanguageModel.swarm(client, tampered, { verifyWeights: false })
    expect((await generateGreedy(unchecked, ref.prompt_ids, 4)).tokens).toEqual(ref.greedy_new_ids.slice(0, 4))
    await unchecked.release()
    writeFileSync(file, JSON.stringify({ ...manifest, blockHashes: ['nope'] }))
    await expect(LanguageModel.swarm(client, tampered)).rejects.toThrow(/petal_client\.json: expected/)
  }, 30_000)
})
