import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CheckpointError } from './errors.js'

/** The Llama-family settings that Petal's graphs are built from. One record, parsed once. */
export interface LlamaConfig {
  /** `model_type` from config.json ("llama", "mistral", "qwen2" or "qwen3"). */
  readonly modelType: string
  /** C: width of the residual stream. */
  readonly hiddenSize: number
  /** F: width of the MLP. */
  readonly intermediateSize: number
  /** L: number of transformer blocks. */
  readonly numLayers: number
  /** H: query heads. */
  readonly numHeads: number
  /** Hkv: key/value heads (H % Hkv == 0; Hkv < H is grouped-query attention). */
  readonly numKvHeads: number
  /** D: per-head width (config `head_dim`, else C / H). */
  readonly headDim: number
  /** V: vocabulary size. */
  readonly vocabSize: number
  readonly maxPositions: number
  readonly rmsNormEps: number
  readonly ropeTheta: number
  /** How RoPE's frequencies are stretched for long contexts (model/rope.ts applies it). */
  readonly ropeScaling: RopeScaling
  /** q/k/v projections have biases (Qwen2 always; Llama with `attention_bias`). */
  readonly qkvBias: boolean
  /** The output projection has a bias (Llama with `attention_bias`). */
  readonly oBias: boolean
  /** Each query and key head is RMS-normalized before RoPE (Qwen3). */
  readonly qkNorm: boolean
  /** The LM head shares `model.embed_tokens.weight`. */
  readonly tieWordEmbeddings: boolean
  readonly bosTokenId: number | undefined
  readonly eosTokenIds: readonly number[]
}

/**
 * RoPE frequency scaling, as Hugging Face's `rope_scaling` (or `rope_parameters`) names it:
 * `linear` divides every frequency by `factor`; `llama3` (Llama 3.1 and later) divides the
 * low frequencies by `factor`, keeps the high ones and blends the band between them.
 */
export type RopeScaling =
  | { readonly type: 'default' }
  | { readonly type: 'linear', readonly factor: number }
  | { readonly type: 'llama3', readonly factor: number, readonly lowFreqFactor: number, readonly highFreqFactor: number, readonly originalMaxPositions: number }

const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'llama3']

const SUPPORTED_ARCHITECTURES = new Set(['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'])
const SUPPORTED_MODEL_TYPES = new Set(['llama', 'mistral', 'qwen2', 'qwen3'])

/** Reads and validates `DIR/config.json`. Every refusal names the file, the field and its value. */
export function readLlamaConfig (dir: string): LlamaConfig {
  const file = join(dir, 'config.json')
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err: any) {
    throw new CheckpointError(`${file}: cannot read config: ${err.code === 'ENOENT' ? 'file not found' : err.message}`, { cause: err })
  }
  return parseLlamaConfig(raw, file)
}

/** Validates a parsed config.json object; `file` is only used in error messages. */
export function parseLlamaConfig (raw: unknown, file = 'config.json'): LlamaConfig {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) throw new CheckpointError(`${file}: config must be a JSON object`)
  const cfg = raw as Record<string, unknown>
  const fail = (field: string, why: string): never => {
    throw new CheckpointError(`${file}: field "${field}" ${why}: current value is ${JSON.stringify(cfg[field])}`)
  }
  const int = (field: string, fallback?: number): number => {
    const v = cfg[field] ?? fallback
    if (v === undefined) fail(field, 'is missing')
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(field, 'must be a positive integer')
    return v as number
  }
  const num = (field: string, fallback?: number): number => {
    const v = cfg[field] ?? fallback
    if (v === undefined) fail(field, 'is missing')
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(field, 'must be a positive number')
    return v as number
  }

  const modelType = cfg.model_type
  if (typeof modelType !== 'string' || !SUPPORTED_MODEL_TYPES.has(modelType)) {
    fail('model_type', `is not supported (supported: ${[...SUPPORTED_MODEL_TYPES].join(', ')})`)
  }
  const archs = cfg.architectures
  if (archs !== undefined) {
    if (!Array.isArray(archs) || archs.length === 0 || !archs.every(a => SUPPORTED_ARCHITECTURES.has(a))) {
      fail('architectures', `is not supported (supported: ${[...SUPPORTED_ARCHITECTURES].join(', ')})`)
    }
  }
  const act = cfg.hidden_act ?? 'silu'
  if (act !== 'silu') fail('hidden_act', 'must be "silu"')
  if (cfg.mlp_bias === true) fail('mlp_bias', 'is not supported')
  if (cfg.sliding_window != null && modelType === 'mistral') fail('sliding_window', 'is not supported (sliding-window attention)')
  if (cfg.use_sliding_window === true) fail('use_sliding_window', 'is not supported (sliding-window attention)')
  // Qwen2 always has q/k/v biases and no o bias; attention_bias (Llama, Qwen3) puts one on all four
  const allFourBiases = modelType !== 'qwen2' && cfg.attention_bias === true
  const tp = cfg.pretraining_tp ?? 1
  if (tp !== 1) fail('pretraining_tp', 'must be 1')
  const ropeParams = cfg.rope_parameters as Record<string, unknown> | undefined
  const ropeScaling = cfg.rope_scaling != null
    ? parseRopeScaling(cfg.rope_scaling, 'rope_scaling', file)
    : parseRopeScaling(ropeParams, 'rope_parameters', file)

  const hiddenSize = int('hidden_size')
  const numHeads = int('num_attention_heads')
  const numKvHeads = int('num_key_value_heads', numHeads)
  const headDim = int('head_dim', Number.isInteger(hiddenSize / numHeads) ? hiddenSize / numHeads : undefined)
  if (numHeads % numKvHeads !== 0) fail('num_key_value_heads', `must divide num_attention_heads (${numHeads})`)
  if (headDim % 2 !== 0) fail('head_dim', 'must be even for rotary embeddings')
  const ropeTheta = num('rope_theta', typeof ropeParams?.rope_theta === 'number' ? ropeParams.rope_theta : 10000)

  const eos = cfg.eos_token_id
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? eos : [eos]
  if (!eosTokenIds.every(e => Number.isInteger(e) && e >= 0)) fail('eos_token_id', 'must be a token id or a list of them')
  const bos = cfg.bos_token_id
  if (bos != null && !(Number.isInteger(bos) && (bos as number) >= 0)) fail('bos_token_id', 'must be a token id')

  return {
    modelType: modelType as string,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    maxPositions: int('max_position_embeddings', 4096),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    qkvBias: modelType === 'qwen2' || allFourBiases,
    oBias: allFourBiases,
    qkNorm: modelType === 'qwen3',
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    bosTokenId: bos == null ? undefined : bos as number,
    eosTokenIds: eosTokenIds as number[]
  }
}

/**
 * A config's `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5): its
 * `rope_type` (or the older `type`) and that type's numbers. Absent or "default": no scaling.
 */
function parseRopeScaling (raw: unknown, field: string, file: string): RopeScaling {
  if (raw == null) return { type: 'default' }
  const fail = (why: string): never => { throw new CheckpointError(`${file}: field "${field}" ${why}: current value is ${JSON.stringify(raw)}`) }
  if (typeof raw !== 'object' || Array.isArray(raw)) fail('must be an object')
  const r = raw as Record<string, unknown>
  const type = r.rope_type ?? r.type ?? 'default'
  const number = (key: string): number => {
    const v = r[key]
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`needs "${key}" as a positive number`)
    return v as number
  }
  switch (type) {
    case 'default': return { type: 'default' }
    case 'linear': return { type: 'linear', factor: number('factor') }
    case 'llama3': {
      const scaling = { type: 'llama3', factor: number('factor'), lowFreqFactor: number('low_freq_factor'), highFreqFactor: number('high_freq_factor'), originalMaxPositions: number('original_max_position_embeddings') } as const
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) fail('needs "high_freq_factor" above "low_freq_factor"')
      return scaling
    }
    default: return fail(`has rope type ${JSON.stringify(type)}, which is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`)
  }
}

/** Parameter count of one transformer block (weights only). */
export function blockParameterCount (c: LlamaConfig): number {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = c
  const biases = (c.qkvBias ? (H + 2 * Hkv) * D : 0) + (c.oBias ? C : 0) + (c.qkNorm ? 2 * D : 0)
  return C * H * D + 2 * C * Hkv * D + H * D * C + 3 * C * F + 2 * C + biases
}
