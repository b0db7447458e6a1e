import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { writeRandomLlama } from '../../scripts/make-random-llama.js'
import { argmax, maxAbsDiffRows } from '../helpers/fixtures.js'
import { referenceLogits } from '../helpers/reference-llama.js'

describe('a BF16, 3-shard, tied, 3-block checkpoint written by our own script', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petal-bf16-'))
  const ids = [1, 17, 300, 42, 99, 7, 256, 511, 3, 64]
  let ckpt: Checkpoint
  let model: LocalModel
  beforeAll(async () => {
    writeRandomLlama({ out: dir, hiddenSize: 96, numLayers: 3, numHeads: 6, numKvHeads: 2, headDim: 16, intermediateSize: 200, vocabSize: 512, dtype: 'bf16', shards: 3, tied: true, seed: 7 })
    ckpt = Checkpoint.open(dir)
    model = await LocalModel.load(ckpt, { split: [1] })
  })
  afterAll(async () => {
    await model.release()
    rmSync(dir, { recursive: true, force: true })
  })

  it('is what we asked for', () => {
    expect(ckpt.config.numLayers % 2).toBe(1)
    expect(ckpt.config.tieWordEmbeddings).toBe(true)
    expect(ckpt.has('lm_head.weight')).toBe(false)
    expect(new Set(ckpt.tensorNames().map(n => ckpt.tensorInfo(n)?.file)).size).toBe(3)
    expect(ckpt.tensorInfo('model.layers.0.mlp.up_proj.weight')?.dtype).toBe('BF16')
  })

  it('gives the logits of an independent float64 implementation (1e-4), with the same greedy choices', async () => {
    const ours = await model.newSession().forward(ids)
    const reference = referenceLogits(ckpt, ids)
    expect(maxAbsDiffRows(ours, reference)).toBeLessThan(1e-4)
    expect(ours.map(argmax)).toEqual(reference.map(argmax))
  })
})
