import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import type { LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { buildHeadGraph } from './onnx/span-graph.js'
import { createOrtSession, floatTensor, readFloats, type OrtOptions } from './ort-session.js'

/**
 * What a client holds of a model: the token embedding (a row lookup, done in JS) and
 * the final norm + LM head (an ORT graph).
 */
export class ClientParts {
  readonly config: LlamaConfig
  /** (V, C) */
  readonly #embedding: Float32Array
  readonly #head: ort.InferenceSession

  private constructor (config: LlamaConfig, embedding: Float32Array, head: ort.InferenceSession) {
    this.config = config
    this.#embedding = embedding
    this.#head = head
  }

  static async load (ckpt: Checkpoint, opts: OrtOptions = {}): Promise<ClientParts> {
    const w = ckpt.readClientWeights()
    const head = await createOrtSession(buildHeadGraph(ckpt.config, w), opts)
    return new ClientParts(ckpt.config, w.embedding, head)
  }

  /** ids (T) -> hidden (1,T,C) */
  embed (ids: readonly number[]): Float32Array {
    const { hiddenSize: C, vocabSize: V } = this.config
    const out = new Float32Array(ids.length * C)
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new ShapeError(`Cannot embed token id ${id}: vocabulary size is ${V}`)
      out.set(this.#embedding.subarray(id * C, (id + 1) * C), t * C)
    })
    return out
  }

  /** hidden (1,T,C) -> logits (T,V), one row per position */
  async logits (hidden: Float32Array): Promise<Float32Array[]> {
    const { hiddenSize: C, vocabSize: V } = this.config
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot apply the LM head to ${hidden.length} values: not (1, T, ${C})`)
    const T = hidden.length / C
    const out = await this.#head.run({ hidden: floatTensor(hidden, [1, T, C]) })
    const flat = readFloats(out.logits, 'logits')
    return Array.from({ length: T }, (_, t) => flat.subarray(t * V, (t + 1) * V))
  }

  async release (): Promise<void> {
    await this.#head.release()
  }
}
