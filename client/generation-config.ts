import { join } from 'node:path'
import { CheckpointError } from '../model/errors.js'
import type { SamplerOptions } from './sampling/index.js'
import { readOptionalJson } from '../model/json-file.js'

/** A checkpoint's `generation_config.json`, typed, with transformers' defaults for what it leaves out. */
export interface GenerationConfig {
  readonly bosTokenId: number | undefined
  /** Any of these ends generation (a single id or a list in the file; config.json's when absent). */
  readonly eosTokenIds: readonly number[]
  readonly padTokenId: number | undefined
  /** Prompt + generated tokens (transformers default 20). */
  readonly maxLength: number
  /** Generated tokens; overrides maxLength when set. */
  readonly maxNewTokens: number | undefined
  /** false: greedy decoding (transformers default). */
  readonly doSample: boolean
  /** Default 1. */
  readonly temperature: number
  /** Default 50, as in transformers (used only when sampling). */
  readonly topK: number
  /** Default 1. */
  readonly topP: number
  /** Default 1. */
  readonly repetitionPenalty: number
}

/** Token ids that config.json carries, used when generation_config.json lacks them. */
export interface GenerationFallback {
  bosTokenId?: number
  eosTokenIds?: readonly number[]
  padTokenId?: number
}

/**
 * Reads `DIR/generation_config.json` if present, falling back to `DIR/config.json` for the
 * bos/eos/pad ids and to transformers' defaults for the rest.
 */
export function readGenerationConfig (dir: string): GenerationConfig {
  const file = join(dir, 'generation_config.json')
  const modelFile = join(dir, 'config.json')
  const model = readOptionalJson(modelFile)
  const fallback = model === undefined ? {} : parseIds(model, modelFile)
  return parseGenerationConfig(readOptionalJson(file) ?? {}, fallback, file)
}

/** Validates a parsed generation_config.json object; `file` only labels errors. */
export function parseGenerationConfig (raw: unknown, fallback: GenerationFallback = {}, file = 'generation_config.json'): GenerationConfig {
  const cfg = asObject(raw, file)
  const fail = (field: string, why: string): never => {
    throw new CheckpointError(`${file}: field "${field}" ${why}: current value is ${JSON.stringify(cfg[field])}`)
  }
  const number = (field: string, fallbackValue: number, ok: (v: number) => boolean, why: string): number => {
    const v = cfg[field] ?? fallbackValue
    if (typeof v !== 'number' || !ok(v)) fail(field, why)
    return v as number
  }
  const ids = parseIds(cfg, file)
  const maxNewTokens = cfg.max_new_tokens == null ? undefined : number('max_new_tokens', 0, isPositiveInt, 'must be a positive integer')
  const doSample = cfg.do_sample ?? false
  if (typeof doSample !== 'boolean') fail('do_sample', 'must be a boolean')
  return {
    bosTokenId: ids.bosTokenId ?? fallback.bosTokenId,
    eosTokenIds: ids.eosTokenIds ?? fallback.eosTokenIds ?? [],
    padTokenId: ids.padTokenId ?? fallback.padTokenId,
    maxLength: number('max_length', 20, isPositiveInt, 'must be a positive integer'),
    maxNewTokens,
    doSample: doSample as boolean,
    temperature: number('temperature', 1, v => Number.isFinite(v) && v >= 0, 'must be a finite number >= 0'),
    topK: number('top_k', 50, v => Number.isInteger(v) && v >= 0, 'must be an integer >= 0'),
    topP: number('top_p', 1, v => v > 0 && v <= 1, 'must be in (0, 1]'),
    repetitionPenalty: number('repetition_penalty', 1, v => Number.isFinite(v) && v > 0, 'must be a finite number > 0')
  }
}

/**
 * Sampler settings that reproduce the config: greedy (temperature 0) unless `doSample`; the
 * repetition penalty applies either way, as in transformers.
 */
export function samplerOptionsFrom (config: GenerationConfig, seed?: number): SamplerOptions {
  const { repetitionPenalty } = config
  const base: SamplerOptions = seed === undefined ? { repetitionPenalty } : { repetitionPenalty, seed }
  if (!config.doSample) return { ...base, temperature: 0 }
  return { ...base, temperature: config.temperature, topK: config.topK, topP: config.topP }
}

/** bos/eos/pad ids of a config object; undefined where the field is absent or null. */
function parseIds (raw: unknown, file: string): GenerationFallback {
  const cfg = asObject(raw, file)
  const fail = (field: string, why: string): never => {
    throw new CheckpointError(`${file}: field "${field}" ${why}: current value is ${JSON.stringify(cfg[field])}`)
  }
  const single = (field: string): number | undefined => {
    const v = cfg[field]
    if (v == null) return undefined
    if (!isTokenId(v)) fail(field, 'must be a token id')
    return v as number
  }
  const eos = cfg.eos_token_id
  let eosTokenIds: number[] | undefined
  if (eos != null) {
    eosTokenIds = Array.isArray(eos) ? eos : [eos]
    if (!eosTokenIds.every(isTokenId)) fail('eos_token_id', 'must be a token id or a list of them')
  }
  const out: GenerationFallback = {}
  const bos = single('bos_token_id')
  const pad = single('pad_token_id')
  if (bos !== undefined) out.bosTokenId = bos
  if (pad !== undefined) out.padTokenId = pad
  if (eosTokenIds !== undefined) out.eosTokenIds = eosTokenIds
  return out
}

function asObject (raw: unknown, file: string): Record<string, unknown> {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CheckpointError(`${file}: must be a JSON object: current value is ${JSON.stringify(raw)}`)
  }
  return raw as Record<string, unknown>
}

function isPositiveInt (v: unknown): boolean {
  return Number.isInteger(v) && (v as number) > 0
}

function isTokenId (v: unknown): boolean {
  return Number.isInteger(v) && (v as number) >= 0
}
