import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import type { LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { buildHeadGraph } from './onnx/span-graph.js'
import { dequantizeRow, quantizeWeight, type QuantizedWeight } from './quantize.js'
import { createOrtSession, floatTensor, readFloats, type OrtOptions } from './ort-session.js'
import { RowBatcher } from './row-batcher.js'

export interface ClientPartsOptions extends OrtOptions {
  /**
   * Hold the embedding and LM head as 8-bit blocks (model/quantize.ts): about 29% of their
   * float32 bytes, which for a big vocabulary is most of a client's memory (Llama 3: 2 x
   * 128,256 x 4,096 values), and a faster head where reading it bounds a step. Logits are close
   * to float32's, not equal. Default "none".
   */
  quantization?: 'none' | 'int8'
  /**
   * Compute the head once for the rows of every call waiting while it runs (sessions of one
   * client decoding at once: one pass over its weights instead of one each). Default true;
   * false runs each call alone (benchmarks).
   */
  batchHead?: boolean
}

/**
 * What a client holds of a model: the token embedding (a row lookup, done in JS) and
 * the final norm + LM head (an ORT graph).
 */
export class ClientParts {
  readonly config: LlamaConfig
  /** (V, C), float32 or 8-bit blocks */
  readonly #embedding: Float32Array | QuantizedWeight
  readonly #head: ort.InferenceSession
  /** Calls of logits() made while the head runs share its next pass (undefined: each alone). */
  readonly #batcher: RowBatcher | undefined

  private constructor (config: LlamaConfig, embedding: Float32Array | QuantizedWeight, head: ort.InferenceSession, batch: boolean) {
    this.config = config
    this.#embedding = embedding
    this.#head = head
    this.#batcher = batch ? new RowBatcher(async (rows, T) => await this.#runHead(rows, T), config.hiddenSize, config.vocabSize) : undefined
  }

  static async load (ckpt: Checkpoint, opts: ClientPartsOptions = {}): Promise<ClientParts> {
    const { quantization = 'none', batchHead = true, ...ort } = opts
    const { vocabSize: V, hiddenSize: C } = ckpt.config
    const w = ckpt.readClientWeights()
    const head = await createOrtSession(buildHeadGraph(ckpt.config, w, quantization), ort)
    const embedding = quantization === 'int8' ? quantizeWeight(w.embedding, V, C, 8) : w.embedding
    return new ClientParts(ckpt.config, embedding, head, batchHead)
  }

  /** Passes of the head that served several calls at once (batchHead). */
  get batchedHeadPasses (): number {
    return this.#batcher?.batchedPasses ?? 0
  }

  /** ids (T) -> hidden (1,T,C) */
  embed (ids: readonly number[]): Float32Array {
    const { hiddenSize: C, vocabSize: V } = this.config
    const out = new Float32Array(ids.length * C)
    const table = this.#embedding
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new ShapeError(`Cannot embed token id ${id}: vocabulary size is ${V}`)
      if (table instanceof Float32Array) out.set(table.subarray(id * C, (id + 1) * C), t * C)
      else dequantizeRow(table, id, out, t * C)
    })
    return out
  }

  /** hidden (1,T,C) -> logits (T,V), one row per position */
  async logits (hidden: Float32Array): Promise<Float32Array[]> {
    const { hiddenSize: C, vocabSize: V } = this.config
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot apply the LM head to ${hidden.length} values: not (1, T, ${C})`)
    const T = hidden.length / C
    const flat = this.#batcher !== undefined ? await this.#batcher.run(hidden) : await this.#runHead(hidden, T)
    return Array.from({ length: T }, (_, t) => flat.subarray(t * V, (t + 1) * V))
  }

  /** hidden (1,T,C) -> logits (T*V) flat, one ORT run */
  async #runHead (hidden: Float32Array, T: number): Promise<Float32Array> {
    const out = await this.#head.run({ hidden: floatTensor(hidden, [1, T, this.config.hiddenSize]) })
    return readFloats(out.logits, 'logits')
  }

  async release (): Promise<void> {
    await this.#head.release()
  }
}
