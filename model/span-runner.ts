import type * as ort from 'onnxruntime-node'
import type { Checkpoint } from './checkpoint.js'
import { blockParameterCount, type LlamaConfig } from './config.js'
import { ShapeError } from './errors.js'
import { GpuSpanRunner } from './gpu/gpu-span-runner.js'
import { SpanCache } from './kv-cache.js'
import { concatRows } from './onnx/linear.js'
import { buildSpanGraph, spanNames } from './onnx/span-graph.js'
import type { Quantization } from './quantize.js'
import { createOrtSession, defaultThreads, floatTensor, positionTensor, readFloats, visibilityTensor, type OrtOptions } from './ort-session.js'
import { runLayout, visibility, type ForwardOptions, type RunLayout } from './token-tree.js'

export interface SpanRunnerInit extends OrtOptions {
  /**
   * Blocks per ORT session. 1 (the default) lets a server run any sub-span of its span and
   * loads with a third of the peak memory; larger cuts per-run overhead on tiny models.
   */
  blocksPerGraph?: number
  /** Weights held as read (float32, the default) or quantized to 8 or 4 bits (model/quantize.ts; CPU and webgpu). */
  quantization?: Quantization
  /** Called as weights are read: (bytes done, bytes total), in float32 bytes. */
  onProgress?: (done: number, total: number) => void
  /**
   * Most sessions' runs one forwardPacked pass takes on the GPU span path, which loads small
   * graphs that gather the device caches of 1..packLimit sessions into one arena (default 1:
   * lone runs only). The CPU runners pack any number.
   */
  packLimit?: number
}

/** One ORT session over blocks [start, end). */
interface Segment {
  readonly start: number
  readonly end: number
  readonly session: ort.InferenceSession
}

/**
 * Runs blocks [start, end) of a checkpoint on onnxruntime. Stateless about sequences:
 * each caller brings its own SpanCache, so one runner serves many sessions.
 */
export class SpanRunner {
  readonly config: LlamaConfig
  readonly start: number
  readonly end: number
  /** Most sessions' runs forwardPacked takes at once: any number on the CPU. */
  readonly packLimit: number = Number.POSITIVE_INFINITY
  /**
   * Most cached positions, all runs together, that one forwardPacked pass should read. Packing
   * copies the caches it reads into one buffer: their bytes stay under a quarter of the
   * weights' (and at least 512 positions), so that the copy costs less than the pass it saves.
   */
  get maxPackedPositions (): number {
    const kvBytesPerPosition = 2 * 4 * this.config.numKvHeads * this.config.headDim
    return Math.max(512, Math.floor(blockParameterCount(this.config) * 4 / kvBytesPerPosition / 4))
  }
  readonly #segments: Segment[]

  private constructor (config: LlamaConfig, start: number, end: number, segments: Segment[]) {
    this.config = config
    this.start = start
    this.end = end
    this.#segments = segments
  }

  static async load (ckpt: Checkpoint, start: number, end: number, init: SpanRunnerInit = {}): Promise<SpanRunner> {
    // WebGPU: one session per span with the KV cache kept on the device (model/gpu/). Same
    // public surface (checked there); PETAL_WEBGPU_PER_BLOCK=1 keeps the per-block graphs below.
    if (init.device === 'webgpu' && process.env.PETAL_WEBGPU_PER_BLOCK !== '1') return await GpuSpanRunner.load(ckpt, start, end, init) as unknown as SpanRunner
    if (init.device !== undefined && init.device !== 'cpu' && (init.quantization ?? 'none') !== 'none') throw new Error(`Cannot hold blocks as ${init.quantization} on ${init.device}: quantized blocks run on the CPU and on webgpu only`)
    const cfg = ckpt.config
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= cfg.numLayers)) {
      throw new ShapeError(`Cannot load blocks [${start}, ${end}): the model has ${cfg.numLayers} blocks`)
    }
    const per = Math.max(1, init.blocksPerGraph ?? 1)
    const segments: Segment[] = []
    const blockBytes = ckpt.blockByteSize(start)
    const total = blockBytes * (end - start)
    for (let s = start; s < end; s += per) {
      const e = Math.min(end, s + per)
      const weights = []
      for (let b = s; b < e; b++) {
        const base = (b - start) * blockBytes
        weights.push(ckpt.readBlock(b, { onProgress: (d, t) => init.onProgress?.(base + (t > 0 ? d / t : 1) * blockBytes, total) }))
      }
      // The graph bytes hold a copy of the weights; ORT copies them again, so drop ours at once.
      const session = await createOrtSession(buildSpanGraph(cfg, s, weights, init.quantization), { threads: defaultThreads(cfg), ...init })
      segments.push({ start: s, end: e, session })
    }
    return new SpanRunner(cfg, start, end, segments)
  }

  /** Blocks per ORT session: sessions (and routes) may only cut at multiples of it from `start`. */
  get blocksPerSession (): number {
    return this.#segments[0] === undefined ? 1 : this.#segments[0].end - this.#segments[0].start
  }

  /** Whether a session may cover exactly [start, end): it must cut at segment boundaries. */
  canServe (start: number, end: number): boolean {
    return start < end && this.#segments.some(s => s.start === start) && this.#segments.some(s => s.end === end)
  }

  newCache (start = this.start, end = this.end): SpanCache {
    if (!this.canServe(start, end)) throw new ShapeError(`Cannot serve blocks [${start}, ${end}) from span [${this.start}, ${this.end})`)
    return new SpanCache(start, end, this.config.numKvHeads * this.config.headDim)
  }

  /**
   * hidden (1,T,C) for positions position..position+T-1 -> hidden (1,T,C).
   * The cache is first truncated to `position` (position-addressed rollback); a run that
   * starts beyond the cache's end is refused. `signal` aborts between ORT sessions (blocks);
   * an aborted run leaves the cache truncated to `position`. With `parents` the rows are a
   * token tree (model/token-tree.ts): only its trunk is cached.
   */
  async forward (hidden: Float32Array, cache: SpanCache, position: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const C = this.config.hiddenSize
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
    if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
    const T = hidden.length / C
    const layout = runLayout(position, T, opts.parents)
    cache.truncate(position)
    let x = hidden
    try {
      x = await this.#runSegments(x, layout, cache, position, opts.signal)
    } catch (err) {
      cache.truncate(position) // blocks already run appended rows: undo them all
      throw err
    }
    return x
  }

  /**
   * Several sequences' runs as one: each item's hidden (1,T_i,C) at its own positions over its
   * own cache -> each item's hidden (1,T_i,C), in one pass over the weights (batched decode:
   * where reading the weights bounds a step, N sessions' steps cost about one). The rows are
   * packed into one sequence of sum T_i rows over the concatenated caches, and the mask lets
   * each row see only its own cache and its own earlier rows, as token trees do. Chains only;
   * every cache must cover the same blocks. Each cache is truncated to its position first;
   * on failure every one is left truncated there.
   */
  async forwardPacked (items: ReadonlyArray<{ hidden: Float32Array, cache: SpanCache, position: number }>, signal?: AbortSignal): Promise<Float32Array[]> {
    const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = this.config
    const rows: number[] = []
    for (const { hidden, cache, position } of items) {
      if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
      if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
      const first = (items[0] as { cache: SpanCache }).cache
      if (cache.start !== first.start || cache.end !== first.end) throw new ShapeError(`Cannot pack caches of [${first.start}, ${first.end}) and [${cache.start}, ${cache.end}) into one run`)
      rows.push(hidden.length / C)
    }
    for (const { cache, position } of items) cache.truncate(position)
    const T = rows.reduce((a, b) => a + b, 0)
    const P = items.reduce((n, it) => n + it.position, 0)
    const S = P + T
    // row r of item i sees item i's cache slots and its rows up to r
    const mask = new Uint8Array(T * S)
    const positions: number[] = []
    let pastAt = 0
    let rowAt = 0
    for (const [i, { position }] of items.entries()) {
      for (let j = 0; j < (rows[i] as number); j++) {
        const r = rowAt + j
        mask.fill(1, r * S + pastAt, r * S + pastAt + position)
        mask.fill(1, r * S + P + rowAt, r * S + P + r + 1)
        positions.push(position + j)
      }
      pastAt += position
      rowAt += rows[i] as number
    }
    const row = Hkv * D
    let x = concatRows(items.map(it => it.hidden))
    try {
      const blocks = (items[0] as { cache: SpanCache }).cache
      for (const seg of this.#segments) {
        if (seg.end <= blocks.start || seg.start >= blocks.end) continue
        signal?.throwIfAborted()
        const feeds: Record<string, ort.Tensor> = { [spanNames.hidden]: floatTensor(x, [1, T, C]), [spanNames.positions]: positionTensor(positions), [spanNames.mask]: visibilityTensor(mask, T, S) }
        for (let b = seg.start; b < seg.end; b++) {
          feeds[spanNames.pastKey(b)] = floatTensor(concatRows(items.map(it => it.cache.block(b).key.view())), [1, P, Hkv, D])
          feeds[spanNames.pastValue(b)] = floatTensor(concatRows(items.map(it => it.cache.block(b).value.view())), [1, P, Hkv, D])
        }
        const out = await seg.session.run(feeds)
        for (let b = seg.start; b < seg.end; b++) {
          const keys = readFloats(out[spanNames.newKey(b)], spanNames.newKey(b))
          const values = readFloats(out[spanNames.newValue(b)], spanNames.newValue(b))
          let at = 0
          for (const [i, it] of items.entries()) {
            const n = (rows[i] as number) * row
            it.cache.block(b).key.append(keys.subarray(at, at + n))
            it.cache.block(b).value.append(values.subarray(at, at + n))
            at += n
          }
        }
        x = readFloats(out[spanNames.hiddenOut], spanNames.hiddenOut)
        if (x.length !== T * C) throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
      }
    } catch (err) {
      for (const { cache, position } of items) cache.truncate(position)
      throw err
    }
    const outs: Float32Array[] = []
    let at = 0
    for (const n of rows) {
      outs.push(x.slice(at * C, (at + n) * C))
      at += n
    }
    return outs
  }

  async #runSegments (hidden: Float32Array, layout: RunLayout, cache: SpanCache, position: number, signal: AbortSignal | undefined): Promise<Float32Array> {
    const C = this.config.hiddenSize
    const T = layout.rows
    const positions = positionTensor(layout.positions)
    const mask = visibilityTensor(visibility(layout, position), T, position + T)
    const cachedValues = layout.trunk * this.config.numKvHeads * this.config.headDim
    let x = hidden
    for (const seg of this.#segments) {
      if (seg.end <= cache.start || seg.start >= cache.end) continue
      signal?.throwIfAborted()
      const feeds: Record<string, ort.Tensor> = { [spanNames.hidden]: floatTensor(x, [1, T, C]), [spanNames.positions]: positions, [spanNames.mask]: mask }
      for (let b = seg.start; b < seg.end; b++) {
        const { key, value } = cache.block(b)
        feeds[spanNames.pastKey(b)] = floatTensor(key.view(), [1, position, this.config.numKvHeads, this.config.headDim])
        feeds[spanNames.pastValue(b)] = floatTensor(value.view(), [1, position, this.config.numKvHeads, this.config.headDim])
      }
      const out = await seg.session.run(feeds)
      for (let b = seg.start; b < seg.end; b++) {
        const { key, value } = cache.block(b)
        key.append(readFloats(out[spanNames.newKey(b)], spanNames.newKey(b)).subarray(0, cachedValues))
        value.append(readFloats(out[spanNames.newValue(b)], spanNames.newValue(b)).subarray(0, cachedValues))
      }
      x = readFloats(out[spanNames.hiddenOut], spanNames.hiddenOut)
      if (x.length !== T * C) throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
    }
    return x
  }

  async release (): Promise<void> {
    await Promise.all(this.#segments.map(async s => { await s.session.release() }))
  }
}
