import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseLlamaConfig, type LlamaConfig } from '../../model/config.js'
import { CheckpointError } from '../../model/errors.js'
import { ropeInverseFrequencies } from '../../model/rope.js'
import { expectReferenceLogits, expectRunnersAgree, featureTwin, type FeatureTwin } from '../helpers/model-checks.js'
import { referenceInverseFrequencies } from '../helpers/reference-llama.js'

const BASE = {
  model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 16, vocab_size: 512, rope_theta: 10000
}
// head_dim 16, theta 1e4: wavelengths 6.3, 19.9, 62.8, 199, ... With an original context of
// 64 and frequency factors 1 and 8, pair 0 is kept (< 8), pairs 1-2 are blended (8..64) and
// pairs 3-7 are divided by the factor (> 64): every band within a short sequence.
const LLAMA3 = { rope_type: 'llama3', factor: 4, low_freq_factor: 1, high_freq_factor: 8, original_max_position_embeddings: 64 }

function config (extra: Record<string, unknown>): LlamaConfig {
  return parseLlamaConfig({ ...BASE, ...extra })
}

describe('RoPE scaling: config', () => {
  it('reads rope_scaling (rope_type or the older type) and rope_parameters; absent or "default" is no scaling', () => {
    expect(config({}).ropeScaling).toEqual({ type: 'default' })
    expect(config({ rope_scaling: null }).ropeScaling).toEqual({ type: 'default' })
    expect(config({ rope_parameters: { rope_type: 'default', rope_theta: 500000 } })).toMatchObject({ ropeScaling: { type: 'default' }, ropeTheta: 10000 })
    expect(config({ rope_scaling: { type: 'linear', factor: 2 } }).ropeScaling).toEqual({ type: 'linear', factor: 2 })
    const llama3 = { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 8, originalMaxPositions: 64 }
    expect(config({ rope_scaling: LLAMA3 }).ropeScaling).toEqual(llama3)
    expect(config({ rope_theta: undefined, rope_parameters: { ...LLAMA3, rope_theta: 500000 } })).toMatchObject({ ropeScaling: llama3, ropeTheta: 500000 })
  })

  it('refuses other rope types and incomplete llama3 settings, naming the field', () => {
    expect(() => config({ rope_scaling: { rope_type: 'dynamic', factor: 2 } })).toThrow(/"rope_scaling" has rope type "dynamic", which is not supported \(supported: default, linear, llama3\)/)
    expect(() => config({ rope_parameters: { rope_type: 'yarn', factor: 4 } })).toThrow(/"rope_parameters" has rope type "yarn"/)
    expect(() => config({ rope_scaling: { ...LLAMA3, low_freq_factor: undefined } })).toThrow(/needs "low_freq_factor" as a positive number/)
    expect(() => config({ rope_scaling: { ...LLAMA3, high_freq_factor: 1 } })).toThrow(/"high_freq_factor" above "low_freq_factor"/)
    expect(() => config({ rope_scaling: { type: 'linear' } })).toThrow(CheckpointError)
  })
})

describe('RoPE scaling: inverse frequencies', () => {
  it('default is theta^(-2i/D); linear divides every frequency by the factor', () => {
    const plain = ropeInverseFrequencies(config({}))
    expect(Array.from(plain)).toEqual(Array.from({ length: 8 }, (_, i) => 1 / Math.pow(10000, (2 * i) / 16)))
    const linear = ropeInverseFrequencies(config({ rope_scaling: { type: 'linear', factor: 2 } }))
    linear.forEach((f, i) => { expect(f).toBeCloseTo(plain[i]! / 2, 15) })
  })

  it('llama3 keeps the high frequencies, divides the low ones and blends the band between (as transformers computes it)', () => {
    const plain = ropeInverseFrequencies(config({}))
    const cfg = config({ rope_scaling: LLAMA3 })
    const scaled = ropeInverseFrequencies(cfg)
    expect(scaled[0]).toBe(plain[0])
    for (const i of [1, 2]) {
      expect(scaled[i]).toBeGreaterThan(plain[i]! / 4)
      expect(scaled[i]).toBeLessThan(plain[i]!)
    }
    for (let i = 3; i < 8; i++) expect(scaled[i]).toBeCloseTo(plain[i]! / 4, 15)
    const reference = referenceInverseFrequencies(cfg)
    scaled.forEach((f, i) => { expect(Math.abs(f - reference[i]!)).toBeLessThan(1e-15) })
  })
})

describe('a random Llama with llama3 RoPE scaling', () => {
  const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 5) % 512)
  let twin: FeatureTwin
  beforeAll(async () => {
    twin = await featureTwin({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: 512, seed: 11 }, {}, { rope_scaling: LLAMA3 })
  })
  afterAll(async () => { await twin.close() })

  it('gives the logits of the independent float64 implementation (1e-4), which the unscaled model does not', async () => {
    expect(twin.ckpt.config.ropeScaling.type).toBe('llama3')
    await expectReferenceLogits(twin.model, twin.ckpt, ids, twin.withoutDir)
  })

  it('runs the same in a draft (WholeModel) and in the GPU span graph (on the CPU EP)', async () => {
    await expectRunnersAgree(twin.model, twin.ckpt, ids)
  })
})
