import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseGenerationConfig, readGenerationConfig, samplerOptionsFrom } from '../../client/generation-config.js'
import { Sampler } from '../../client/sampling/index.js'

const STORIES = join(import.meta.dirname, '..', '..', 'models', 'stories260k')

function folder (files: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'petal-gen-'))
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(content))
  return dir
}

describe('readGenerationConfig', () => {
  it('reads stories260k: stop on [2, 1], greedy, transformers defaults elsewhere', () => {
    expect(readGenerationConfig(STORIES)).toEqual({
      bosTokenId: 1,
      eosTokenIds: [2, 1],
      padTokenId: undefined,
      maxLength: 256,
      maxNewTokens: undefined,
      doSample: false,
      temperature: 1,
      topK: 50,
      topP: 1,
      repetitionPenalty: 1
    })
  })

  it('falls back to config.json for the token ids', () => {
    const cfg = readGenerationConfig(folder({ 'config.json': { eos_token_id: 2, bos_token_id: 1, pad_token_id: 0 } }))
    expect(cfg).toMatchObject({ eosTokenIds: [2], bosTokenId: 1, padTokenId: 0, maxLength: 20, doSample: false })
    const mixed = readGenerationConfig(folder({
      'config.json': { eos_token_id: [7, 8], bos_token_id: 1 },
      'generation_config.json': { bos_token_id: 3, do_sample: true, temperature: 0.7, top_p: 0.9, top_k: 0, max_new_tokens: 64 }
    }))
    expect(mixed).toMatchObject({ eosTokenIds: [7, 8], bosTokenId: 3, doSample: true, temperature: 0.7, topP: 0.9, topK: 0, maxNewTokens: 64 })
  })

  it('gives defaults and no stop ids for a folder without either file', () => {
    expect(readGenerationConfig(folder({}))).toMatchObject({ eosTokenIds: [], bosTokenId: undefined, maxLength: 20 })
  })

  it('refuses bad values, naming the file and the field', () => {
    const bad = (raw: object, field: string): void => {
      let error: any
      try {
        parseGenerationConfig(raw, {}, 'gen.json')
      } catch (err) {
        error = err
      }
      expect(error).toMatchObject({ name: 'CheckpointError', code: 'ERR_CHECKPOINT' })
      expect(error.message).toContain(`gen.json: field "${field}"`)
    }
    bad({ eos_token_id: 'x' }, 'eos_token_id')
    bad({ eos_token_id: [2, -1] }, 'eos_token_id')
    bad({ temperature: -0.5 }, 'temperature')
    bad({ top_p: 0 }, 'top_p')
    bad({ top_k: 2.5 }, 'top_k')
    bad({ repetition_penalty: 0 }, 'repetition_penalty')
    bad({ max_length: 0 }, 'max_length')
    bad({ do_sample: 'yes' }, 'do_sample')
  })
})

describe('samplerOptionsFrom', () => {
  it('is greedy unless do_sample, keeping the repetition penalty', () => {
    const greedy = parseGenerationConfig({ repetition_penalty: 1.2, temperature: 0.5 })
    expect(samplerOptionsFrom(greedy)).toEqual({ temperature: 0, repetitionPenalty: 1.2 })
    expect(new Sampler(samplerOptionsFrom(readGenerationConfig(STORIES))).greedy).toBe(true)
    const sampled = parseGenerationConfig({ do_sample: true, temperature: 0.5, top_k: 10, top_p: 0.95 })
    expect(samplerOptionsFrom(sampled, 7)).toEqual({ temperature: 0.5, topK: 10, topP: 0.95, repetitionPenalty: 1, seed: 7 })
  })
})
