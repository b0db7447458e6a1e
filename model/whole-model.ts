import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import type { LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { SpanCache } from './kv-cache.js'
import { buildWholeModelGraph, wholeModelNames } from './onnx/whole-model-graph.js'
import { createOrtSession, defaultThreads, floatTensor, positionTensor, readFloats, tokenTensor, visibilityTensor, type OrtOptions } from './ort-session.js'
import { runLayout, visibility } from './token-tree.js'

/**
 * A small model run whole in one ORT session (onnx/whole-model-graph.ts): token ids in,
 * logits out. Made for draft models on the client, where a step costs what ORT spends per
 * session run; a served model runs as spans (span-runner.ts), with the same blocks.
 */
export class WholeModel {
  readonly config: LlamaConfig
  readonly #session: ort.InferenceSession

  private constructor (config: LlamaConfig, session: ort.InferenceSession) {
    this.config = config
    this.#session = session
  }

  /** Loads every block, the embedding and the head (intra-op threads as spans get them, unless `opts` says). */
  static async load (ckpt: Checkpoint, opts: OrtOptions = {}): Promise<WholeModel> {
    const cfg = ckpt.config
    const blocks = Array.from({ length: cfg.numLayers }, (_, b) => ckpt.readBlock(b))
    const graph = buildWholeModelGraph(cfg, blocks, ckpt.readClientWeights())
    return new WholeModel(cfg, await createOrtSession(graph, { threads: defaultThreads(cfg), ...opts }))
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
  readonly #cache: SpanCache

  constructor (cfg: LlamaConfig, session: ort.InferenceSession) {
    this.#cfg = cfg
    this.#session = session
    this.#cache = new SpanCache(0, cfg.numLayers, cfg.numKvHeads * cfg.headDim)
  }

  /** Positions cached so far. */
  get length (): number { return this.#cache.length }

  /**
   * ids at positions position..position+T-1 -> logits (T,V). The cache is first cut back
   * to `position` (position-addressed rollback). With `parents` the ids are a token tree
   * (model/token-tree.ts): only its trunk stays cached.
   */
  async forward (ids: readonly number[], position = this.length, parents?: readonly number[]): Promise<Float32Array[]> {
    if (!(Number.isInteger(position) && position >= 0 && position <= this.length)) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${this.length}`)
    const layout = runLayout(position, ids.length, parents)
    this.#cache.truncate(position)
    return await this.#run(ids, layout.positions, visibility(layout, position), layout.trunk) // branch rows leave nothing behind
  }

  /**
   * Rows at explicit positions that see what `mask` (T, length + T) allows, 1 = visible: the
   * cache's rows in storage order, then the run's own. Every row's keys and values are
   * appended, whatever its position: rows kept this way as scratch (token-tree nodes that
   * later rows attend to) are dropped with `truncate`. -> logits (T, V)
   */
  async forwardMasked (ids: readonly number[], positions: readonly number[], mask: Uint8Array): Promise<Float32Array[]> {
    if (positions.length !== ids.length || mask.length !== ids.length * (this.length + ids.length)) {
      throw new ShapeError(`Cannot run ${ids.length} rows with ${positions.length} positions and a mask of ${mask.length} values: need (${ids.length}, ${this.length + ids.length})`)
    }
    return await this.#run(ids, positions, mask, ids.length)
  }

  /** Cuts the cache back to `length` rows (scratch rows included). */
  truncate (length: number): void {
    this.#cache.truncate(length)
  }

  /** ids (T) at `positions` over the whole cache, seeing what `mask` (T, length + T) allows; the first `keep` rows' keys and values are appended. */
  async #run (ids: readonly number[], positions: readonly number[], mask: Uint8Array, keep: number): Promise<Float32Array[]> {
    const { vocabSize: V, numKvHeads: Hkv, headDim: D, numLayers } = this.#cfg
    const T = ids.length
    const past = this.length
    if (T === 0) throw new ShapeError('Cannot run zero tokens')
    for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new ShapeError(`Cannot embed token id ${id}: vocabulary size is ${V}`)
    const feeds: Record<string, ort.Tensor> = {
      [wholeModelNames.ids]: tokenTensor(ids),
      [wholeModelNames.positions]: positionTensor(positions),
      [wholeModelNames.mask]: visibilityTensor(mask, T, past + T)
    }
    const dims = [1, past, Hkv, D]
    for (let b = 0; b < numLayers; b++) {
      const { key, value } = this.#cache.block(b)
      feeds[wholeModelNames.pastKey(b)] = floatTensor(key.view(), dims)
      feeds[wholeModelNames.pastValue(b)] = floatTensor(value.view(), dims)
    }
    const out = await this.#session.run(feeds)
    const kept = keep * Hkv * D
    for (let b = 0; b < numLayers; b++) {
      const { key, value } = this.#cache.block(b)
      key.append(readFloats(out[wholeModelNames.newKey(b)], 'new key').subarray(0, kept))
      value.append(readFloats(out[wholeModelNames.newValue(b)], 'new value').subarray(0, kept))
    }
    const logits = readFloats(out[wholeModelNames.logits], wholeModelNames.logits)
    return Array.from({ length: T }, (_, t) => logits.subarray(t * V, (t + 1) * V))
  }
}
