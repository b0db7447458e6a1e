import * as ort from 'onnxruntime-node'
import type { Checkpoint } from '../checkpoint.js'
import type { LlamaConfig } from '../config.js'
import { ShapeError } from '../errors.js'
import type { SpanCache } from '../kv-cache.js'
import type { SpanRunner, SpanRunnerInit } from '../span-runner.js'
import { readFloats } from '../ort-session.js'
import { ropeInverseFrequencies } from '../rope.js'
import { runLayout, visibility, type ForwardOptions, type RunLayout } from '../token-tree.js'
import { GpuSpanCache, type GpuKv } from './gpu-span-cache.js'
import { buildGpuSpanGraph, gpuSpanNames as names } from './gpu-span-graph.js'

/** Additive mask value for hidden slots: finite, so no kernel sees an infinity. */
const HIDDEN = -1e30

/**
 * Runs blocks [start, end) as ONE onnxruntime session whose KV cache stays on the device:
 * each run feeds the previous run's present keys/values (gpu-buffer tensors) back as its
 * pasts, and only the final hidden state (1,T,C) is copied back. Rotary tables and the
 * causal mask are built here, so no int64 shape arithmetic runs between GPU kernels.
 * Same surface as SpanRunner; a session must cover the whole span.
 */
export class GpuSpanRunner {
  readonly config: LlamaConfig
  readonly start: number
  readonly end: number
  /** The GPU caches live on the device in one graph's layout: runs are not packed (SpanRunner.forwardPacked). */
  readonly canPack: boolean = false
  readonly #session: ort.InferenceSession
  readonly #invFreq: Float32Array

  private constructor (config: LlamaConfig, start: number, end: number, session: ort.InferenceSession) {
    this.config = config
    this.start = start
    this.end = end
    this.#session = session
    this.#invFreq = Float32Array.from(ropeInverseFrequencies(config))
  }

  static async load (ckpt: Checkpoint, start: number, end: number, init: SpanRunnerInit = {}): Promise<GpuSpanRunner> {
    const cfg = ckpt.config
    if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= cfg.numLayers)) {
      throw new ShapeError(`Cannot load blocks [${start}, ${end}): the model has ${cfg.numLayers} blocks`)
    }
    const blockBytes = ckpt.blockByteSize(start)
    const total = blockBytes * (end - start)
    const weights = []
    for (let b = start; b < end; b++) {
      const base = (b - start) * blockBytes
      weights.push(ckpt.readBlock(b, { onProgress: (d, t) => init.onProgress?.(base + (t > 0 ? d / t : 1) * blockBytes, total) }))
    }
    const device = init.device ?? 'webgpu'
    const onDevice = device !== 'cpu'
    const where: Record<string, ort.Tensor.DataLocation> = { [names.hiddenOut]: 'cpu' }
    for (let b = start; b < end; b++) { where[names.presentKey(b)] = 'gpu-buffer'; where[names.presentValue(b)] = 'gpu-buffer' }
    const session = await ort.InferenceSession.create(buildGpuSpanGraph(cfg, start, weights), {
      executionProviders: onDevice ? [device, 'cpu'] : ['cpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...(init.threads !== undefined ? { intraOpNumThreads: init.threads } : {}),
      ...(onDevice ? { preferredOutputLocation: where } : {}),
      ...(init.spinning === true ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } })
    })
    return new GpuSpanRunner(cfg, start, end, session)
  }

  /** One ORT session covers the whole span. */
  get blocksPerSession (): number {
    return this.end - this.start
  }

  /** One session covers the whole span, so only [this.start, this.end) can be served. */
  canServe (start: number, end: number): boolean {
    return start === this.start && end === this.end
  }

  newCache (start = this.start, end = this.end): SpanCache {
    if (!this.canServe(start, end)) throw new ShapeError(`Cannot serve blocks [${start}, ${end}) from GPU span [${this.start}, ${this.end}): only the whole span`)
    return new GpuSpanCache(start, end, this.config.numKvHeads * this.config.headDim)
  }

  /**
   * hidden (1,T,C) for positions position..position+T-1 -> hidden (1,T,C).
   * The cache is first truncated to `position`; a run that starts beyond its end is refused.
   * One ORT run, so `signal` is checked once before it; a failed run leaves the cache
   * truncated to `position`.
   */
  async forward (hidden: Float32Array, cache: SpanCache, position: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = this.config
    if (!(cache instanceof GpuSpanCache)) throw new ShapeError('Cannot run a GPU span on a cache made by a CPU runner')
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
    if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
    opts.signal?.throwIfAborted()
    const T = hidden.length / C
    const layout = runLayout(position, T, opts.parents)
    cache.truncate(position)
    const [cos, sin, rows] = this.#rotary(layout.positions)
    const feeds: Record<string, ort.Tensor> = {
      [names.hidden]: new ort.Tensor('float32', hidden, [1, T, C]),
      [names.cos]: cos,
      [names.sin]: sin,
      [names.rows]: rows,
      [names.mask]: additiveMask(layout, position),
      [names.pastLen]: new ort.Tensor('int64', BigInt64Array.of(BigInt(position)), [1])
    }
    const past = cache.blocks
    for (let b = this.start; b < this.end; b++) {
      const kv = past?.[b - this.start]
      feeds[names.pastKey(b)] = kv?.key ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, D, 0])
      feeds[names.pastValue(b)] = kv?.value ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, 0, D])
    }
    const out = await this.#session.run(feeds)
    const presents: GpuKv[] = []
    for (let b = this.start; b < this.end; b++) {
      const key = out[names.presentKey(b)]
      const value = out[names.presentValue(b)]
      if (key === undefined || value === undefined) throw new Error(`ORT output "${names.presentKey(b)}" or "${names.presentValue(b)}" is missing`)
      presents.push({ key, value })
    }
    cache.replace(presents, position + layout.trunk) // tree branch rows lie past the length: never read
    const x = readFloats(out[names.hiddenOut], names.hiddenOut)
    if (x.length !== T * C) throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
    return x
  }

  /** cos/sin (T,D/2) of the rows' positions, in float32 as the CPU graph computes them, and the row index of each token. */
  #rotary (positions: readonly number[]): [ort.Tensor, ort.Tensor, ort.Tensor] {
    const half = this.#invFreq.length
    const T = positions.length
    const cos = new Float32Array(T * half)
    const sin = new Float32Array(T * half)
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const f = Math.fround((positions[t] as number) * (this.#invFreq[i] as number))
        cos[t * half + i] = Math.cos(f)
        sin[t * half + i] = Math.sin(f)
      }
    }
    const rows = new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, t) => BigInt(t)), [1, T])
    return [new ort.Tensor('float32', cos, [T, half]), new ort.Tensor('float32', sin, [T, half]), rows]
  }

  async forwardPacked (_items: ReadonlyArray<{ hidden: Float32Array, cache: SpanCache, position: number }>): Promise<Float32Array[]> {
    throw new ShapeError('Cannot pack runs of several sessions on the GPU span path')
  }

  async release (): Promise<void> {
    await this.#session.release()
  }
}

/** (1,1,1,T,S) additive mask, S = past + T: 0 where the row may attend (model/token-tree.ts), else HIDDEN. */
function additiveMask (layout: RunLayout, past: number): ort.Tensor {
  const visible = visibility(layout, past)
  const m = Float32Array.from(visible, v => v === 1 ? 0 : HIDDEN)
  return new ort.Tensor('float32', m, [1, 1, 1, layout.rows, past + layout.rows])
}

/** SpanRunner.load hands out a GpuSpanRunner as a SpanRunner: this fails to compile if their public surfaces drift apart. */
type Surface<T> = { [K in keyof T]: T[K] }
export const gpuRunnerHasSpanRunnerSurface: GpuSpanRunner extends Surface<SpanRunner> ? true : never = true
