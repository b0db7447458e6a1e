/**
 * Writes a random-weight Llama (or Qwen2 / Qwen3: `--qwen2`, `--qwen3`) checkpoint folder in Hugging Face layout, for speed and shape
 * tests. Values are seeded per tensor name, so the same seed gives the same float32 draws
 * whatever the dtype or sharding.
 *
 *   npx node --import tsx scripts/make-random-llama.ts --out /tmp/rl --params-target 200M --dtype bf16 --shards 3
 *   npx node --import tsx scripts/make-random-llama.ts --out /tmp/tiny --hidden 64 --layers 3 --heads 4 \
 *     --kv-heads 2 --intermediate 128 --vocab 512 [--head-dim 16] [--dtype f32|f16|bf16] [--shards N] [--tied] [--seed S] [--qwen2 | --qwen3]
 */
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { parseLlamaConfig } from '../model/config.js'
import { f32ToBf16, f32ToF16, type FloatDtype } from '../model/dtype.js'
import { encodeSafetensorsHeader } from '../model/safetensors.js'
import { CLIENT_TENSOR_NAMES, blockTensorNames } from '../model/weights.js'

/** The model's dimensions, with the names config.json uses in LlamaConfig. */
export interface RandomLlamaShape {
  /** C */ hiddenSize: number
  /** L */ numLayers: number
  /** H */ numHeads: number
  /** Hkv */ numKvHeads: number
  /** F */ intermediateSize: number
  /** V */ vocabSize: number
  /** D; default C / H */ headDim?: number
}

export interface RandomLlamaOptions extends RandomLlamaShape {
  /** Folder to write (created; earlier weight files in it are removed). */
  out: string
  /** Stored dtype (default f32). */
  dtype?: 'f32' | 'f16' | 'bf16'
  /** 1 writes model.safetensors; more writes shards and model.safetensors.index.json. */
  shards?: number
  /** Tie the LM head to the embedding (no lm_head.weight). */
  tied?: boolean
  seed?: number
  /** Folder to copy tokenizer.json and tokenizer_config.json from (default models/stories260k). */
  tokenizerFrom?: string
  maxPositions?: number
  /** "qwen2" writes a Qwen2 checkpoint (the same blocks with q/k/v biases), "qwen3" a Qwen3 one (with q/k head norms); default "llama". */
  modelType?: 'llama' | 'qwen2' | 'qwen3'
  /** Llama's `attention_bias`: q/k/v/o biases. */
  attentionBias?: boolean
}

export interface RandomLlamaResult {
  parameters: number
  /** Bytes of tensor data written (all shards). */
  dataBytes: number
  /** Weight files written, relative to `out`. */
  files: string[]
}

const DTYPES = { f32: ['F32', 'float32'], f16: ['F16', 'float16'], bf16: ['BF16', 'bfloat16'] } as const
const DEFAULT_TOKENIZER = fileURLToPath(new URL('../models/stories260k', import.meta.url))
/** Elements generated and written per step (4 MiB of float32). */
const CHUNK = 1 << 20

interface Planned { name: string, shape: number[], dtype: FloatDtype, norm: boolean }

/** Writes the folder; returns the parameter count and the files written. */
export function writeRandomLlama (opts: RandomLlamaOptions): RandomLlamaResult {
  const { out, dtype = 'f32', shards = 1, tied = false, seed = 0 } = opts
  const [stDtype, torchDtype] = DTYPES[dtype]
  const config = hfConfig(opts, tied, torchDtype)
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize: V } = parseLlamaConfig(config)

  const plan: Planned[] = []
  const add = (name: string, shape: number[]): void => { plan.push({ name, shape, dtype: stDtype, norm: shape.length === 1 }) }
  add(CLIENT_TENSOR_NAMES.embedding, [V, C])
  for (let i = 0; i < opts.numLayers; i++) {
    const n = blockTensorNames(i)
    add(n.inputNorm, [C]); add(n.q, [H * D, C]); add(n.k, [Hkv * D, C]); add(n.v, [Hkv * D, C]); add(n.o, [C, H * D])
    add(n.postNorm, [C]); add(n.gate, [F, C]); add(n.up, [F, C]); add(n.down, [C, F])
    const biases: Array<[string, number]> = opts.modelType === 'qwen2' || opts.attentionBias === true ? [[n.qBias, H * D], [n.kBias, Hkv * D], [n.vBias, Hkv * D]] : []
    if (opts.modelType !== 'qwen2' && opts.attentionBias === true) biases.push([n.oBias, C])
    for (const [name, size] of biases) plan.push({ name, shape: [size], dtype: stDtype, norm: false })
    if (opts.modelType === 'qwen3') { add(n.qNorm, [D]); add(n.kNorm, [D]) }
  }
  add(CLIENT_TENSOR_NAMES.finalNorm, [C])
  if (!tied) add(CLIENT_TENSOR_NAMES.lmHead, [V, C])

  const groups = splitShards(plan, shards)
  mkdirSync(out, { recursive: true })
  for (const f of readdirSync(out)) {
    if (f === 'model.safetensors' || f === 'model.safetensors.index.json' || /^model-\d+-of-\d+\.safetensors$/.test(f)) rmSync(join(out, f))
  }
  const files = groups.length === 1
    ? ['model.safetensors']
    : groups.map((_, k) => `model-${pad5(k + 1)}-of-${pad5(groups.length)}.safetensors`)
  const weightMap: Record<string, string> = {}
  let dataBytes = 0
  groups.forEach((group, k) => {
    dataBytes += writeShard(join(out, files[k]!), group, seed)
    for (const t of group) weightMap[t.name] = files[k]!
  })
  if (groups.length > 1) {
    writeJson(join(out, 'model.safetensors.index.json'), { metadata: { total_size: dataBytes }, weight_map: weightMap })
  }
  writeJson(join(out, 'config.json'), config)
  writeJson(join(out, 'generation_config.json'), { bos_token_id: 1, eos_token_id: 2, do_sample: false, max_length: 256 })
  const tokenizerFrom = opts.tokenizerFrom ?? DEFAULT_TOKENIZER
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerFrom, f), join(out, f))

  const parameters = plan.reduce((sum, t) => sum + count(t.shape), 0)
  return { parameters, dataBytes, files }
}

/**
 * Fills in the dimensions not given so that the model has about `target` parameters:
 * C from a ladder by size, H = C/64, Hkv = H/4, F = 8C/3 rounded up to 256, V = 32000,
 * then L solved from what is left after the embedding (and LM head unless tied).
 */
export function shapeForParams (target: number, given: Partial<RandomLlamaShape>, tied = false): Required<RandomLlamaShape> {
  const C = given.hiddenSize ?? (target < 50e6 ? 512 : target < 400e6 ? 1024 : target < 2e9 ? 2048 : 4096)
  const H = given.numHeads ?? Math.max(1, Math.round(C / 64))
  const Hkv = given.numKvHeads ?? Math.max(1, Math.floor(H / 4))
  const D = given.headDim ?? Math.floor(C / H)
  const F = given.intermediateSize ?? Math.ceil((8 * C) / 3 / 256) * 256
  const V = given.vocabSize ?? 32000
  const block = 2 * C * H * D + 2 * C * Hkv * D + 3 * C * F + 2 * C // as blockParameterCount
  const outside = V * C * (tied ? 1 : 2) + C
  const L = given.numLayers ?? Math.max(1, Math.round((target - outside) / block))
  return { hiddenSize: C, numLayers: L, numHeads: H, numKvHeads: Hkv, intermediateSize: F, vocabSize: V, headDim: D }
}

/** Parses "200M", "1.5B", "500k", "1000000" into a number. */
export function parseCount (s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmb]?)$/i.exec(s.trim())
  if (m === null) throw new Error(`Cannot parse "${s}" as a parameter count: use e.g. 200M, 1.5B, 500k`)
  const unit = { '': 1, k: 1e3, m: 1e6, b: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'b']
  return Math.round(Number(m[1]) * unit)
}

function hfConfig (s: RandomLlamaOptions, tied: boolean, torchDtype: string): Record<string, unknown> {
  return {
    ...(s.modelType === 'qwen2' || s.modelType === 'qwen3'
      ? { architectures: [s.modelType === 'qwen2' ? 'Qwen2ForCausalLM' : 'Qwen3ForCausalLM'], model_type: s.modelType, use_sliding_window: false }
      : { architectures: ['LlamaForCausalLM'], model_type: 'llama' }),
    hidden_size: s.hiddenSize, intermediate_size: s.intermediateSize, num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads, num_key_value_heads: s.numKvHeads, head_dim: s.headDim ?? s.hiddenSize / s.numHeads,
    vocab_size: s.vocabSize, max_position_embeddings: s.maxPositions ?? 2048,
    rms_norm_eps: 1e-5, rope_theta: 10000.0, rope_scaling: null, hidden_act: 'silu',
    attention_bias: s.attentionBias === true, mlp_bias: false, pretraining_tp: 1, initializer_range: 0.02,
    tie_word_embeddings: tied, use_cache: true, bos_token_id: 1, eos_token_id: 2, torch_dtype: torchDtype
  }
}

/** Splits at tensor boundaries into exactly `n` non-empty groups of about equal bytes. */
function splitShards (plan: Planned[], n: number): Planned[][] {
  if (!Number.isInteger(n) || n < 1 || n > plan.length) {
    throw new RangeError(`Cannot write ${n} shards: must be an integer in 1..${plan.length} (the tensor count)`)
  }
  const total = plan.reduce((sum, t) => sum + count(t.shape), 0)
  const groups: Planned[][] = [[]]
  let done = 0
  plan.forEach((t, j) => {
    const current = groups[groups.length - 1]!
    const shardsLeft = n - groups.length
    if (current.length > 0 && shardsLeft > 0 && (done >= (total * groups.length) / n || plan.length - j <= shardsLeft)) groups.push([t])
    else current.push(t)
    done += count(t.shape)
  })
  return groups
}

/** Streams one safetensors file: header, then each tensor generated CHUNK elements at a time. */
function writeShard (path: string, tensors: Planned[], seed: number): number {
  const { header, sizes } = encodeSafetensorsHeader(tensors)
  const fd = openSync(path, 'w')
  try {
    writeAll(fd, header)
    const values = new Float32Array(CHUNK)
    for (const t of tensors) {
      const uniform = uniformSource(seed, t.name)
      const n = count(t.shape)
      for (let at = 0; at < n; at += CHUNK) {
        const chunk = values.subarray(0, Math.min(CHUNK, n - at))
        // norms: 1 + 0.1 N(0,1); matrices: 0.02 N(0,1), so activations stay finite
        fillNormal(chunk, uniform, t.norm ? 1 : 0, t.norm ? 0.1 : 0.02)
        const stored = t.dtype === 'F32' ? chunk : t.dtype === 'F16' ? f32ToF16(chunk) : f32ToBf16(chunk)
        writeAll(fd, new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength))
      }
    }
  } finally {
    closeSync(fd)
  }
  return sizes.reduce((a, b) => a + b, 0)
}

/** Uniform draws in (0, 1) from sfc32, seeded by (seed, tensor name). */
function uniformSource (seed: number, name: string): () => number {
  let h = 0x811c9dc5 ^ seed // FNV-1a of the name, mixed with the seed
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  let a = h >>> 0; let b = 0x9e3779b9; let c = seed >>> 0; let d = 1
  const uniform = (): number => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0; a = b ^ (b >>> 9); b = (c + (c << 3)) | 0; c = (c << 21) | (c >>> 11); c = (c + t) | 0
    return ((t >>> 0) + 0.5) / 4294967296
  }
  for (let i = 0; i < 12; i++) uniform()
  return uniform
}

/** out[i] = mean + std * N(0,1), Box-Muller in pairs (CHUNK is even, so draws don't depend on dtype). */
function fillNormal (out: Float32Array, uniform: () => number, mean: number, std: number): void {
  for (let i = 0; i < out.length; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(uniform()))
    const theta = 2 * Math.PI * uniform()
    out[i] = mean + r * Math.cos(theta)
    if (i + 1 < out.length) out[i + 1] = mean + r * Math.sin(theta)
  }
}

function writeAll (fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done)
}

function writeJson (path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value, null, 2) + '\n')
}

const count = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1)
const pad5 = (k: number): string => String(k).padStart(5, '0')

function main (): void {
  const { values: v } = parseArgs({
    options: {
      out: { type: 'string' }, hidden: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' },
      'kv-heads': { type: 'string' }, intermediate: { type: 'string' }, vocab: { type: 'string' }, 'head-dim': { type: 'string' },
      dtype: { type: 'string', default: 'f32' }, shards: { type: 'string', default: '1' }, tied: { type: 'boolean', default: false },
      seed: { type: 'string', default: '0' }, 'params-target': { type: 'string' }, 'tokenizer-from': { type: 'string' },
      qwen2: { type: 'boolean', default: false }, qwen3: { type: 'boolean', default: false }
    }
  })
  const int = (flag: keyof typeof v): number | undefined => {
    const s = v[flag]
    if (s === undefined || typeof s === 'boolean') return undefined
    const n = Number(s)
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag} must be a non-negative integer: current value is ${s}`)
    return n
  }
  if (v.out === undefined) throw new Error('--out DIR is required')
  if (!(v.dtype! in DTYPES)) throw new Error(`--dtype must be f32, f16 or bf16: current value is ${v.dtype}`)
  const given: Partial<RandomLlamaShape> = {
    hiddenSize: int('hidden'), numLayers: int('layers'), numHeads: int('heads'), numKvHeads: int('kv-heads'),
    intermediateSize: int('intermediate'), vocabSize: int('vocab'), headDim: int('head-dim')
  }
  let shape: RandomLlamaShape
  if (v['params-target'] !== undefined) {
    shape = shapeForParams(parseCount(v['params-target']), given, v.tied)
  } else {
    const flags = { hidden: 'hiddenSize', layers: 'numLayers', heads: 'numHeads', 'kv-heads': 'numKvHeads', intermediate: 'intermediateSize', vocab: 'vocabSize' } as const
    const missing = Object.entries(flags).filter(([, key]) => given[key] === undefined).map(([flag]) => `--${flag}`)
    if (missing.length > 0) throw new Error(`Missing ${missing.join(', ')} (or pass --params-target, e.g. 200M)`)
    shape = given as RandomLlamaShape
  }
  const dtype = v.dtype as 'f32' | 'f16' | 'bf16'
  const t0 = performance.now()
  const res = writeRandomLlama({
    ...shape, out: v.out, dtype, shards: int('shards') ?? 1, tied: v.tied, seed: int('seed') ?? 0,
    ...(v.qwen2 === true ? { modelType: 'qwen2' as const } : v.qwen3 === true ? { modelType: 'qwen3' as const } : {}),
    ...(v['tokenizer-from'] === undefined ? {} : { tokenizerFrom: v['tokenizer-from'] })
  })
  const s = shape
  console.log(`wrote ${v.out}: ${res.parameters.toLocaleString('en-US')} parameters ` +
    `(C=${s.hiddenSize} L=${s.numLayers} H=${s.numHeads} Hkv=${s.numKvHeads} D=${s.headDim ?? s.hiddenSize / s.numHeads} ` +
    `F=${s.intermediateSize} V=${s.vocabSize}${v.tied ? ', tied' : ''}), ${dtype}, ${res.files.length} file(s), ` +
    `${(res.dataBytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

// run as a script, not imported; in a bundle (scripts/gpu) import.meta.url is the bundle's, named otherwise
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && /make-random-llama\.[jt]s$/.test(process.argv[1])) {
  try {
    main()
  } catch (err: any) {
    console.error(err.message)
    process.exitCode = 1
  }
}
