import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { blockParameterCount, readLlamaConfig, type LlamaConfig } from './config.js'
import { CheckpointError } from './errors.js'
import { readSafetensorsHeader, readTensorChunks, readTensorF32, type SafetensorsHeader, type TensorEntry } from './safetensors.js'
import { CLIENT_TENSOR_NAMES, blockTensorNames, type BlockWeights, type ClientWeights } from './weights.js'

const SINGLE_FILE = 'model.safetensors'
const INDEX_FILE = 'model.safetensors.index.json'

/** Reports bytes read from disk so far out of the bytes the whole request will read. */
export type LoadProgress = (bytesDone: number, bytesTotal: number) => void

/** Options of the multi-tensor reads. */
export interface ReadOptions {
  /** Called after every chunk (at most 16 MiB) read, e.g. to draw a progress bar. */
  onProgress?: LoadProgress
}

/**
 * A Hugging Face Llama checkpoint folder, opened from its headers only. Tensors are read by
 * offset on demand, so reading a span touches only that span's bytes.
 */
export class Checkpoint {
  /** The folder holding config.json and the safetensors file(s). */
  readonly dir: string
  readonly config: LlamaConfig
  readonly #tensors: ReadonlyMap<string, TensorEntry>
  /** File the tensor index came from, for error messages. */
  readonly #source: string

  private constructor (dir: string, config: LlamaConfig, tensors: ReadonlyMap<string, TensorEntry>, source: string) {
    this.dir = dir
    this.config = config
    this.#tensors = tensors
    this.#source = source
  }

  /**
   * Reads `DIR/config.json` and the safetensors header(s): `model.safetensors`, else
   * `model.safetensors.index.json` and every shard it names. Reads no tensor data.
   */
  static open (dir: string): Checkpoint {
    const config = readLlamaConfig(dir)
    if (existsSync(join(dir, SINGLE_FILE))) {
      return new Checkpoint(dir, config, readSafetensorsHeader(join(dir, SINGLE_FILE)).tensors, SINGLE_FILE)
    }
    if (existsSync(join(dir, INDEX_FILE))) return new Checkpoint(dir, config, indexShards(dir), INDEX_FILE)
    throw new CheckpointError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} in the folder`)
  }

  /** True when the checkpoint stores a tensor of this name. */
  has (name: string): boolean {
    return this.#tensors.has(name)
  }

  /** Names of every stored tensor. */
  tensorNames (): string[] {
    return [...this.#tensors.keys()]
  }

  /** Where a tensor lives (file, offset, dtype, shape), or undefined. */
  tensorInfo (name: string): TensorEntry | undefined {
    return this.#tensors.get(name)
  }

  /** Reads one tensor as float32 after checking that its shape is `expectedDims`. */
  readTensor (name: string, expectedDims: readonly number[]): Float32Array {
    return readTensorF32(this.#entry(name, expectedDims))
  }

  /** Reads block `i`'s nine tensors. */
  readBlock (i: number, opts: ReadOptions = {}): BlockWeights {
    return this.readBlocks(i, i + 1, opts)[0]!
  }

  /**
   * Reads blocks `[start, end)`, only their own tensors. Every shape is checked before any
   * data is read, so a bad checkpoint fails fast.
   */
  readBlocks (start: number, end: number, opts: ReadOptions = {}): BlockWeights[] {
    this.#checkSpan(start, end)
    const entries: Array<Partial<Record<keyof BlockWeights, TensorEntry>>> = []
    for (let i = start; i < end; i++) entries.push(this.#blockEntries(i))
    const load = this.#loader(entries.flatMap(e => Object.values(e)), opts)
    return entries.map(e => Object.fromEntries(Object.entries(e).map(([key, entry]) => [key, load(entry)])) as unknown as BlockWeights)
  }

  /**
   * Reads the embedding (V, C), final norm (C) and LM head (V, C). A tied model (config
   * `tie_word_embeddings`) returns the embedding array itself as `lmHead`.
   */
  readClientWeights (opts: ReadOptions = {}): ClientWeights {
    const { vocabSize: V, hiddenSize: C, tieWordEmbeddings } = this.config
    const embedding = this.#entry(CLIENT_TENSOR_NAMES.embedding, [V, C])
    const finalNorm = this.#entry(CLIENT_TENSOR_NAMES.finalNorm, [C])
    if (!tieWordEmbeddings && !this.has(CLIENT_TENSOR_NAMES.lmHead)) {
      throw new CheckpointError(`${this.dir}: tensor "${CLIENT_TENSOR_NAMES.lmHead}" is missing and config.json has tie_word_embeddings false`)
    }
    const lmHead = tieWordEmbeddings ? undefined : this.#entry(CLIENT_TENSOR_NAMES.lmHead, [V, C])
    const load = this.#loader(lmHead === undefined ? [embedding, finalNorm] : [embedding, finalNorm, lmHead], opts)
    const emb = load(embedding)
    return { embedding: emb, finalNorm: load(finalNorm), lmHead: lmHead === undefined ? emb : load(lmHead) }
  }

  /** Bytes that block `i`'s weights occupy once widened to float32. */
  blockByteSize (i: number): number {
    this.#checkSpan(i, i + 1)
    return 4 * blockParameterCount(this.config)
  }

  /**
   * sha256 (hex) of block `i`'s stored bytes, tensors in `blockTensorNames` key order, each
   * preceded by "key dtype shape\n". Two servers with equal hashes hold identical weights.
   * Streams the data (16 MiB at a time); nothing is kept.
   */
  blockWeightsHash (i: number): string {
    this.#checkSpan(i, i + 1)
    const hash = createHash('sha256')
    for (const [key, entry] of Object.entries(this.#blockEntries(i))) {
      hash.update(`${key} ${entry.dtype} ${entry.shape.join('x')}\n`)
      readTensorChunks(entry, chunk => { hash.update(chunk) })
    }
    return hash.digest('hex')
  }

  /** Entries of block `i`, each checked against the shape the config implies. */
  #blockEntries (i: number): Partial<Record<keyof BlockWeights, TensorEntry>> {
    const names = blockTensorNames(i)
    return Object.fromEntries(blockTensorShapes(this.config).map(([key, dims]) => [key, this.#entry(names[key], dims)]))
  }

  /** Whether the files hold every tensor of block `i` (a client's copy may hold only its own parts). */
  hasBlock (i: number): boolean {
    const names = blockTensorNames(i)
    return blockTensorShapes(this.config).every(([key]) => this.has(names[key]))
  }

  #entry (name: string, expectedDims: readonly number[]): TensorEntry {
    const entry = this.#tensors.get(name)
    if (entry === undefined) throw new CheckpointError(`${this.dir}: tensor "${name}" is missing (not in ${this.#source})`)
    if (entry.shape.length !== expectedDims.length || entry.shape.some((d, j) => d !== expectedDims[j])) {
      throw new CheckpointError(
        `${entry.file}: tensor "${name}" has shape [${entry.shape.join(', ')}], expected [${expectedDims.join(', ')}] from config.json`
      )
    }
    return entry
  }

  /** A reader of the given entries that reports progress over all of them together. */
  #loader (entries: readonly TensorEntry[], opts: ReadOptions): (e: TensorEntry) => Float32Array {
    const { onProgress } = opts
    const total = entries.reduce((sum, e) => sum + e.byteLength, 0)
    let done = 0
    onProgress?.(0, total)
    return entry => {
      const out = readTensorF32(entry, onProgress === undefined ? undefined : bytes => { onProgress(done + bytes, total) })
      done += entry.byteLength
      return out
    }
  }

  #checkSpan (start: number, end: number): void {
    const L = this.config.numLayers
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > L || start >= end) {
      throw new RangeError(`Cannot read blocks [${start}, ${end}): ${this.dir} has ${L} blocks (0..${L - 1})`)
    }
  }
}

/** name -> entry for a sharded checkpoint, after checking that every shard exists and holds its tensors. */
function indexShards (dir: string): Map<string, TensorEntry> {
  const indexFile = join(dir, INDEX_FILE)
  let raw: any
  try {
    raw = JSON.parse(readFileSync(indexFile, 'utf8'))
  } catch (err) {
    throw new CheckpointError(`${indexFile}: index is not valid JSON`, { cause: err })
  }
  const weightMap: unknown = raw?.weight_map
  if (weightMap == null || typeof weightMap !== 'object' || Array.isArray(weightMap) ||
      !Object.values(weightMap).every(v => typeof v === 'string')) {
    throw new CheckpointError(`${indexFile}: "weight_map" must map tensor names to shard file names`)
  }
  const headers = new Map<string, SafetensorsHeader>()
  const tensors = new Map<string, TensorEntry>()
  for (const [name, shard] of Object.entries(weightMap as Record<string, string>)) {
    let header = headers.get(shard)
    if (header === undefined) {
      const path = join(dir, shard)
      if (!existsSync(path)) throw new CheckpointError(`${indexFile}: shard "${shard}" named in weight_map does not exist (${path})`)
      header = readSafetensorsHeader(path)
      headers.set(shard, header)
    }
    const entry = header.tensors.get(name)
    if (entry === undefined) throw new CheckpointError(`${header.file}: tensor "${name}" is missing (${INDEX_FILE} places it in this shard)`)
    tensors.set(name, entry)
  }
  return tensors
}

/** The tensors of a block this config has, with their shapes, in `blockTensorNames` key order (biases and head norms last, only where the config has them). */
function blockTensorShapes (cfg: LlamaConfig): Array<[keyof BlockWeights, number[]]> {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = cfg
  const shapes: Array<[keyof BlockWeights, number[]]> = [
    ['inputNorm', [C]], ['q', [H * D, C]], ['k', [Hkv * D, C]], ['v', [Hkv * D, C]], ['o', [C, H * D]],
    ['postNorm', [C]], ['gate', [F, C]], ['up', [F, C]], ['down', [C, F]]
  ]
  if (cfg.qkvBias) shapes.push(['qBias', [H * D]], ['kBias', [Hkv * D]], ['vBias', [Hkv * D]])
  if (cfg.oBias) shapes.push(['oBias', [C]])
  if (cfg.qkNorm) shapes.push(['qNorm', [D]], ['kNorm', [D]])
  return shapes
}
