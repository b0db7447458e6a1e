import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import type { LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { buildWholeModelGraph, wholeModelNames } from './onnx/whole-model-graph.js'
import { createOrtSession, floatTensor, positionTensor, readFloats, tokenTensor, visibilityTensor, type OrtOptions } from './ort-session.js'
import { runLayout, visibility } from './token-tree.js'

/**
 * A small model run whole in one lean ORT session (onnx/whole-model-graph.ts): token ids in,
 * logits out. Made for draft models on the client, where a step's cost is ORT's per-node
 * overhead; a served model runs as spans (span-runner.ts), whose graphs never copy a cache.
 */
export class WholeModel {
  readonly config: LlamaConfig
  readonly #session: ort.InferenceSession

  private constructor (config: LlamaConfig, session: ort.InferenceSession) {
    this.config = config
    this.#session = session
  }

  /** Loads every block, the embedding and the head; one intra-op thread unless `opts.threads` says otherwise. */
  static async load (ckpt: Checkpoint, opts: OrtOptions = {}): Promise<WholeModel> {
    const cfg = ckpt.config
    const blocks = Array.from({ length: cfg.numLayers }, (_, b) => ckpt.readBlock(b))
    const graph = buildWholeModelGraph(cfg, blocks, ckpt.readClientWeights())
    return new WholeModel(cfg, await createOrtSession(graph, { threads: 1, ...opts }))
  }

  /** A fresh, empty KV cache. */
  newSession (): WholeModelSequence {
    return new WholeModelSequence(this.config, this.#session)
  }

  async release (): Promise<void> {
    await this.#session.release()
  }
}

/** One sequence's caches over a WholeModel: feed tokens at positions, get logits back. */
export class WholeModelSequence {
  readonly #cfg: LlamaConfig
  readonly #session: ort.InferenceSession
  /** Per block, keys and values (Hkv, length, D) of positions [0, length). */
  #keys: Float32Array[]
  #values: Float32Array[]
  #length = 0

  constructor (cfg: LlamaConfig, session: ort.InferenceSession) {
    this.#cfg = cfg
    this.#session = session
    this.#keys = Array.from({ length: cfg.numLayers }, () => new Float32Array(0))
    this.#values = Array.from({ length: cfg.numLayers }, () => new Float32Array(0))
  }

  /** Positions cached so far. */
  get length (): number { return this.#length }

  /**
   * ids at positions position..position+T-1 -> logits (T,V). The cache is first cut back
   * to `position` (position-addressed rollback). With `parents` the ids are a token tree
   * (model/token-tree.ts): only its trunk stays cached.
   */
  async forward (ids: readonly number[], position = this.#length, parents?: readonly number[]): Promise<Float32Array[]> {
    const { vocabSize: V, numKvHeads: Hkv, headDim: D, numLayers } = this.#cfg
    const T = ids.length
    if (T === 0) throw new ShapeError('Cannot run zero tokens')
    if (!(Number.isInteger(position) && position >= 0 && position <= this.#length)) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${this.#length}`)
    for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new ShapeError(`Cannot embed token id ${id}: vocabulary size is ${V}`)
    const layout = runLayout(position, T, parents)
    this.#truncate(position)
    const feeds: Record<string, ort.Tensor> = {
      [wholeModelNames.ids]: tokenTensor(ids),
      [wholeModelNames.positions]: positionTensor(layout.positions),
      [wholeModelNames.mask]: visibilityTensor(visibility(layout, position), T, position + T)
    }
    const dims = [1, Hkv, position, D]
    for (let b = 0; b < numLayers; b++) {
      feeds[wholeModelNames.pastKey(b)] = floatTensor(this.#keys[b] as Float32Array, dims)
      feeds[wholeModelNames.pastValue(b)] = floatTensor(this.#values[b] as Float32Array, dims)
    }
    const out = await this.#session.run(feeds)
    const S = position + T
    const kept = position + layout.trunk // branch rows leave nothing behind
    for (let b = 0; b < numLayers; b++) {
      this.#keys[b] = firstPositions(readFloats(out[wholeModelNames.presentKey(b)], 'present key'), Hkv, S, D, kept)
      this.#values[b] = firstPositions(readFloats(out[wholeModelNames.presentValue(b)], 'present value'), Hkv, S, D, kept)
    }
    this.#length = kept
    const logits = readFloats(out[wholeModelNames.logits], wholeModelNames.logits)
    return Array.from({ length: T }, (_, t) => logits.subarray(t * V, (t + 1) * V))
  }

  /** Forgets every position >= `length`. */
  #truncate (length: number): void {
    if (length === this.#length) return
    const { numKvHeads: Hkv, headDim: D } = this.#cfg
    this.#keys = this.#keys.map(k => firstPositions(k, Hkv, this.#length, D, length))
    this.#values = this.#values.map(v => firstPositions(v, Hkv, this.#length, D, length))
    this.#length = length
  }
}

/** (N, S, D) -> (N, n, D): the first n positions of every head (the array itself when n = S). */
function firstPositions (x: Float32Array, N: number, S: number, D: number, n: number): Float32Array {
  if (n === S) return x
  const out = new Float32Array(N * n * D)
  for (let h = 0; h < N; h++) out.set(x.subarray(h * S * D, h * S * D + n * D), h * n * D)
  return out
}
