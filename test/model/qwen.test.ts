import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { blockParameterCount, parseLlamaConfig } from '../../model/config.js'
import { LocalModel } from '../../model/local-model.js'
import { writeRandomLlama } from '../../scripts/make-random-llama.js'
import { maxAbsDiffRows } from '../helpers/fixtures.js'
import { expectReferenceLogits, expectRunnersAgree, featureTwin, type FeatureTwin } from '../helpers/model-checks.js'
import { referenceLogits } from '../helpers/reference-llama.js'

const BASE = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512 }

describe('Qwen2 and attention biases: config', () => {
  it('gives Qwen2 q/k/v biases and Llama\'s attention_bias all four; refuses sliding windows', () => {
    expect(parseLlamaConfig({ ...BASE, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] })).toMatchObject({ qkvBias: true, oBias: false })
    expect(parseLlamaConfig({ ...BASE, model_type: 'qwen2', attention_bias: true })).toMatchObject({ qkvBias: true, oBias: false })
    expect(parseLlamaConfig({ ...BASE, model_type: 'llama', attention_bias: true })).toMatchObject({ qkvBias: true, oBias: true })
    expect(parseLlamaConfig({ ...BASE, model_type: 'llama' })).toMatchObject({ qkvBias: false, oBias: false })
    expect(() => parseLlamaConfig({ ...BASE, model_type: 'qwen2', use_sliding_window: true })).toThrow(/"use_sliding_window" is not supported/)
    const plain = parseLlamaConfig({ ...BASE, model_type: 'llama' })
    expect(blockParameterCount(parseLlamaConfig({ ...BASE, model_type: 'qwen2' })) - blockParameterCount(plain)).toBe(4 * 16 + 2 * 2 * 16)
  })
})

describe('a random Qwen2 checkpoint (q/k/v biases, tied head)', () => {
  const ids = [1, 17, 300, 42, 99, 7, 256, 511, 3, 64, 12, 480]
  let twin: FeatureTwin // its twin: the same weights without the biases
  beforeAll(async () => {
    twin = await featureTwin({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 128, vocabSize: 512, tied: true, seed: 3 }, { modelType: 'qwen2' })
  })
  afterAll(async () => { await twin.close() })

  it('reads the biases and gives the logits of the independent float64 implementation (1e-4)', async () => {
    const block = twin.ckpt.readBlock(0)
    expect([block.qBias?.length, block.kBias?.length, block.vBias?.length, block.oBias]).toEqual([64, 32, 32, undefined])
    await expectReferenceLogits(twin.model, twin.ckpt, ids, twin.withoutDir)
  })

  it("and Llama's attention_bias (q/k/v/o) likewise", async () => {
    const biased = mkdtempSync(join(tmpdir(), 'petal-llama-bias-'))
    try {
      writeRandomLlama({ out: biased, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 128, vocabSize: 512, seed: 3, attentionBias: true })
      const llama = Checkpoint.open(biased)
      expect(llama.readBlock(1).oBias?.length).toBe(64)
      const local = await LocalModel.load(llama)
      try {
        expect(maxAbsDiffRows(await local.newSession().forward(ids), referenceLogits(llama, ids))).toBeLessThan(1e-4)
      } finally {
        await local.release()
      }
    } finally {
      rmSync(biased, { recursive: true, force: true })
    }
  })

  it('runs the same as a draft (WholeModel) and in the GPU span graph (on the CPU EP)', async () => {
    await expectRunnersAgree(twin.model, twin.ckpt, ids)
  })
})

describe('a random Qwen3 checkpoint (RMS-normalized query and key heads)', () => {
  const ids = [5, 300, 42, 7, 511, 64, 128, 9, 33, 250]
  let twin: FeatureTwin // its twin: the same weights without the head norms
  beforeAll(async () => {
    twin = await featureTwin({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 32, intermediateSize: 128, vocabSize: 512, tied: true, seed: 4 }, { modelType: 'qwen3' })
  })
  afterAll(async () => { await twin.close() })

  it('reads the head norms and gives the logits of the independent float64 implementation (1e-4)', async () => {
    expect(twin.ckpt.config).toMatchObject({ modelType: 'qwen3', qkNorm: true, qkvBias: false, headDim: 32 })
    expect([twin.ckpt.readBlock(1).qNorm?.length, twin.ckpt.readBlock(1).kNorm?.length]).toEqual([32, 32])
    await expectReferenceLogits(twin.model, twin.ckpt, ids, twin.withoutDir)
  })

  it('runs the same as a draft (WholeModel) and in the GPU span graph (on the CPU EP)', async () => {
    await expectRunnersAgree(twin.model, twin.ckpt, ids)
  })
})
