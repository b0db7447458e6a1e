import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import type { LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { buildHeadGraph } from './onnx/span-graph.js'
import { dequantizeRow, quantizeWeight, type QuantizedWeight } from './quantize.js'
import { createOrtSession, floatTensor, readFloats, type OrtOptions } from './ort-session.js'

/** What `logits` gives for a row it was asked to skip. */
const EMPTY_ROW = new Float32Array(0)

export interface ClientPartsOptions extends OrtOptions {
  /**
   * Hold the embedding and LM head as 8-bit blocks (model/quantize.ts): about 29% of their
   * float32 bytes, which for a big vocabulary is most of a client's memory (Llama 3: 2 x
   * 128,256 x 4,096 values), and a faster head where reading it bounds a step. Logits are close
   * to float32's, not equal. Default "none".
   */
  quantization?: 'none' | 'int8'
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

  private constructor (config: LlamaConfig, embedding: Float32Array | QuantizedWeight, head: ort.InferenceSession) {
    this.config = config
    this.#embedding = embedding
    this.#head = head
  }

  static async load (ckpt: Checkpoint, opts: ClientPartsOptions = {}): Promise<ClientParts> {
    const { quantization = 'none', ...ort } = opts
    const { vocabSize: V, hiddenSize: C } = ckpt.config
    const w = ckpt.readClientWeights()
    const head = await createOrtSession(buildHeadGraph(ckpt.config, w, quantization), ort)
    const embedding = quantization === 'int8' ? quantizeWeight(w.embedding, V, C, 8) : w.embedding
    return new ClientParts(ckpt.config, embedding, head)
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

  /**
   * hidden (1,T,C) -> logits (T,V), one row per position. Rows before `from` come back empty
   * (length 0), not computed: a prompt's rows decide nothing, and the head over a long prompt
   * would cost the client as much as a block (T x V x C multiply-adds). `from` = T runs no
   * head at all (a prefill that only fills the caches).
   */
  async logits (hidden: Float32Array, from = 0): Promise<Float32Array[]> {
    const { hiddenSize: C, vocabSize: V } = this.config
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot apply the LM head to ${hidden.length} values: not (1, T, ${C})`)
    const T = hidden.length / C
    if (!(Number.isInteger(from) && from >= 0 && from <= T)) throw new ShapeError(`Cannot compute logits from row ${from} of ${T}: it must be in [0, ${T}]`)
    if (from === T) return Array.from({ length: T }, () => EMPTY_ROW)
    const out = await this.#head.run({ hidden: floatTensor(hidden.subarray(from * C), [1, T - from, C]) })
    const flat = readFloats(out.logits, 'logits')
    return Array.from({ length: T }, (_, t) => t < from ? EMPTY_ROW : flat.subarray((t - from) * V, (t - from + 1) * V))
  }

  async release (): Promise<void> {
    await this.#head.release()
  }
}
