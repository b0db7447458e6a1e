import type { Checkpoint } from './checkpoint.js'
import { ClientParts } from './client-parts.js'
import { ShapeError } from './errors.js'
import type { SpanCache } from './kv-cache.js'
import type { OrtOptions } from './ort-session.js'
import { SpanRunner, type SpanRunnerInit } from './span-runner.js'

export interface LocalModelInit extends SpanRunnerInit, OrtOptions {
  /** Block indexes where the model is cut into spans, e.g. [2, 4] -> [0,2) [2,4) [4,L). */
  split?: readonly number[]
}

/**
 * The whole model on this machine, composed of spans exactly as a swarm would run it.
 * This is the reference that swarm results are tested against.
 */
export class LocalModel {
  readonly parts: ClientParts
  readonly spans: readonly SpanRunner[]

  private constructor (parts: ClientParts, spans: SpanRunner[]) {
    this.parts = parts
    this.spans = spans
  }

  static async load (ckpt: Checkpoint, init: LocalModelInit = {}): Promise<LocalModel> {
    const L = ckpt.config.numLayers
    const cuts = [...new Set([0, ...(init.split ?? []), L])].sort((a, b) => a - b)
    if (cuts.some(c => !Number.isInteger(c) || c < 0 || c > L)) throw new Error(`Cannot split at ${init.split?.join(',')}: cuts must be block indexes in [0, ${L}]`)
    // the client parts stay float32 here: `quantization` is the blocks'
    const parts = await ClientParts.load(ckpt, { ...(init.device !== undefined ? { device: init.device } : {}), ...(init.threads !== undefined ? { threads: init.threads } : {}), ...(init.spinning !== undefined ? { spinning: init.spinning } : {}) })
    const spans: SpanRunner[] = []
    const total = ckpt.blockByteSize(0) * L
    let done = 0
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [s, e] = [cuts[i] as number, cuts[i + 1] as number]
      spans.push(await SpanRunner.load(ckpt, s, e, {
        ...init,
        onProgress: (d) => init.onProgress?.(done + d, total)
      }))
      done += ckpt.blockByteSize(s) * (e - s)
    }
    return new LocalModel(parts, spans)
  }

  /** A fresh KV cache for every span. */
  newSession (): LocalSequence {
    return new LocalSequence(this)
  }

  async release (): Promise<void> {
    await Promise.all([this.parts.release(), ...this.spans.map(async s => { await s.release() })])
  }
}

/** One sequence's caches over a LocalModel: feed tokens at positions, get logits back. */
export class LocalSequence {
  readonly #model: LocalModel
  readonly #caches: SpanCache[]

  constructor (model: LocalModel) {
    this.#model = model
    this.#caches = model.spans.map(s => s.newCache())
  }

  /** Positions cached so far. */
  get length (): number { return this.#caches[0]?.length ?? 0 }

  /**
   * hidden (1,T,C) at positions position.. -> hidden after the last block. With `parents`
   * the ids are a token tree (model/token-tree.ts): only its trunk stays cached.
   */
  async hidden (ids: readonly number[], position = this.length, parents?: readonly number[]): Promise<Float32Array> {
    let x = this.#model.parts.embed(ids)
    const opts = parents === undefined ? {} : { parents }
    for (const [i, span] of this.#model.spans.entries()) x = await span.forward(x, this.#caches[i] as SpanCache, position, opts)
    return x
  }

  /** Makes the caches a copy of the first `length` positions of `source`'s, a sequence of the same model. */
  copyPrefix (source: LocalSequence, length: number): void {
    if (source.#model !== this.#model) throw new ShapeError('Cannot copy the caches of a sequence of another model')
    if (!Number.isInteger(length) || length < 0 || length > source.length) throw new ShapeError(`Cannot copy ${length} positions: the source holds ${source.length}`)
    this.#caches.forEach((cache, i) => { cache.copyPrefix(source.#caches[i] as SpanCache, length) })
  }

  /** ids at positions position..position+T-1 (or a token tree) -> logits (T,V); rows before `logitsFrom` empty (ClientParts.logits) */
  async forward (ids: readonly number[], position = this.length, parents?: readonly number[], logitsFrom = 0): Promise<Float32Array[]> {
    return await this.#model.parts.logits(await this.hidden(ids, position, parents), logitsFrom)
  }
}
