import * as ort from 'onnxruntime-node'
import type { Checkpoint } from '../checkpoint.js'
import type { LlamaConfig } from '../config.js'
import { ShapeError } from '../errors.js'
import type { SpanCache } from '../kv-cache.js'
import type { SpanRunner, SpanRunnerInit } from '../span-runner.js'
import { concatRows } from '../onnx/linear.js'
import { readFloats } from '../ort-session.js'
import { ropeInverseFrequencies } from '../rope.js'
import { runLayout, visibility, type ForwardOptions, type RunLayout } from '../token-tree.js'
import { GpuSpanCache, type GpuKv } from './gpu-span-cache.js'
import { buildGpuSpanGraph, gpuSpanNames as names } from './gpu-span-graph.js'

/** Additive mask value for hidden slots: finite, so no kernel sees an infinity. */
const HIDDEN = -1e30

/** One sequence's run as a graph slot: its rows, where they start, its cache and its rows' layout. */
interface SlotRun {
  readonly hidden: Float32Array
  readonly cache: GpuSpanCache
  readonly position: number
  readonly layout: RunLayout
}

/**
 * Runs blocks [start, end) as one onnxruntime session whose KV cache stays on the device:
 * each run feeds the previous run's present keys/values (gpu-buffer tensors) back as its
 * pasts, and only the final hidden state (1,T,C) is copied back. Rotary tables and the
 * causal mask are built here, so no int64 shape arithmetic runs between GPU kernels.
 * Same surface as SpanRunner; a session must cover the whole span.
 *
 * With `packLimit` > 1 a second session holds the same blocks as a graph of that many slots,
 * so that several sessions' runs are computed in one pass (batched decode: on the WebGPU EP
 * a decode step is made of kernel dispatches, which N sessions then share). It holds the
 * weights a second time on the device.
 */
export class GpuSpanRunner {
  readonly config: LlamaConfig
  readonly start: number
  readonly end: number
  /** Most sessions' runs forwardPacked takes at once: the packed graph's slots (1: none loaded). */
  readonly packLimit: number
  readonly #session: ort.InferenceSession
  readonly #packed: ort.InferenceSession | undefined
  readonly #invFreq: Float32Array

  private constructor (config: LlamaConfig, start: number, end: number, session: ort.InferenceSession, packed: { session: ort.InferenceSession, slots: number } | undefined) {
    this.config = config
    this.start = start
    this.end = end
    this.#session = session
    this.#packed = packed?.session
    this.packLimit = packed?.slots ?? 1
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
    const session = await createGpuSession(cfg, start, end, buildGpuSpanGraph(cfg, start, weights), init, 1)
    const slots = Math.floor(init.packLimit ?? 1)
    const packed = slots > 1 ? { session: await createGpuSession(cfg, start, end, buildGpuSpanGraph(cfg, start, weights, slots), init, slots), slots } : undefined
    return new GpuSpanRunner(cfg, start, end, session, packed)
  }

  /** One session covers the whole span. */
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
    const run = this.#slotRun(hidden, cache, position, opts.parents)
    opts.signal?.throwIfAborted()
    const [x] = await this.#run(this.#session, 1, [run])
    return x as Float32Array
  }

  /**
   * Several sessions' runs in one pass of the packed graph, each over its own cache: each
   * item's hidden (1,T_i,C) -> its hidden (1,T_i,C). At most `packLimit` items; chains only.
   * Each cache is truncated to its position first; on failure every one is left there.
   */
  async forwardPacked (items: ReadonlyArray<{ hidden: Float32Array, cache: SpanCache, position: number }>, signal?: AbortSignal): Promise<Float32Array[]> {
    if (items.length > this.packLimit) throw new ShapeError(`Cannot pack ${items.length} runs: this GPU span packs at most ${this.packLimit}`)
    const runs = items.map(it => this.#slotRun(it.hidden, it.cache, it.position, undefined))
    if (new Set(runs.map(r => r.cache)).size !== runs.length) throw new ShapeError('Cannot pack two runs over one cache')
    signal?.throwIfAborted()
    return runs.length === 1 ? await this.#run(this.#session, 1, runs) : await this.#run(this.#packed as ort.InferenceSession, this.packLimit, runs)
  }

  /** Checks a run against its cache and lays out its rows. */
  #slotRun (hidden: Float32Array, cache: SpanCache, position: number, parents: readonly number[] | undefined): SlotRun {
    const C = this.config.hiddenSize
    if (!(cache instanceof GpuSpanCache)) throw new ShapeError('Cannot run a GPU span on a cache made by a CPU runner')
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
    if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
    return { hidden, cache, position, layout: runLayout(position, hidden.length / C, parents) }
  }

  /** Runs `runs` in the first slots of a graph of `slots` (the rest empty); each cache takes its slot's presents. */
  async #run (session: ort.InferenceSession, slots: number, runs: readonly SlotRun[]): Promise<Float32Array[]> {
    const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = this.config
    for (const { cache, position } of runs) cache.truncate(position)
    const rowsOf = runs.map(r => r.layout.rows)
    const T = rowsOf.reduce((a, b) => a + b, 0)
    const [cos, sin, rowIndex] = this.#rotary(runs.flatMap(r => r.layout.positions))
    const feeds: Record<string, ort.Tensor> = {
      [names.hidden]: new ort.Tensor('float32', runs.length === 1 ? (runs[0] as SlotRun).hidden : concatRows(runs.map(r => r.hidden)), [1, T, C]),
      [names.cos]: cos,
      [names.sin]: sin,
      [names.rows]: rowIndex,
      [names.mask]: packedMask(runs)
    }
    const int64 = (v: number): ort.Tensor => new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), [1])
    let rowAt = 0
    for (let s = 0; s < slots; s++) {
      const run = runs[s]
      feeds[names.pastLen(s)] = int64(run?.position ?? 0)
      if (slots > 1) {
        feeds[names.rowStart(s)] = int64(rowAt)
        rowAt += rowsOf[s] ?? 0
        feeds[names.rowEnd(s)] = int64(rowAt)
      }
      const past = run?.cache.blocks
      for (let b = this.start; b < this.end; b++) {
        const kv = past?.[b - this.start]
        feeds[names.pastKey(b, s)] = kv?.key ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, D, 0])
        feeds[names.pastValue(b, s)] = kv?.value ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, 0, D])
      }
    }
    const out = await session.run(feeds)
    for (let s = 0; s < slots; s++) {
      const presents: GpuKv[] = []
      for (let b = this.start; b < this.end; b++) {
        const key = out[names.presentKey(b, s)]
        const value = out[names.presentValue(b, s)]
        if (key === undefined || value === undefined) throw new Error(`ORT output "${names.presentKey(b, s)}" or "${names.presentValue(b, s)}" is missing`)
        presents.push({ key, value })
      }
      const run = runs[s]
      if (run === undefined) presents.forEach(kv => { kv.key.dispose(); kv.value.dispose() }) // an unused slot's empty presents
      else run.cache.replace(presents, run.position + run.layout.trunk) // tree branch rows lie past the length: never read
    }
    const x = readFloats(out[names.hiddenOut], names.hiddenOut)
    if (x.length !== T * C) throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
    if (runs.length === 1) return [x]
    let at = 0
    return rowsOf.map(n => x.slice(C * at, C * (at += n)))
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

  async release (): Promise<void> {
    await this.#session.release()
    await this.#packed?.release()
  }
}

/** One ORT session of a GPU span graph of `slots`, its presents kept on the device. */
async function createGpuSession (cfg: LlamaConfig, start: number, end: number, graph: Uint8Array, init: SpanRunnerInit, slots: number): Promise<ort.InferenceSession> {
  const device = init.device ?? 'webgpu'
  const onDevice = device !== 'cpu'
  const where: Record<string, ort.Tensor.DataLocation> = { [names.hiddenOut]: 'cpu' }
  for (let b = start; b < end; b++) {
    for (let s = 0; s < slots; s++) { where[names.presentKey(b, s)] = 'gpu-buffer'; where[names.presentValue(b, s)] = 'gpu-buffer' }
  }
  return await ort.InferenceSession.create(graph, {
    executionProviders: onDevice ? [device, 'cpu'] : ['cpu'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(init.threads !== undefined ? { intraOpNumThreads: init.threads } : {}),
    ...(onDevice ? { preferredOutputLocation: where } : {}),
    ...(init.spinning === true ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } })
  })
}

/**
 * (1,1,1,T,S) additive mask over the slots' presents side by side, S = the sum of each slot's
 * past + rows: a row sees its own slot's past and, within its run, what model/token-tree.ts
 * lets it see; every other column is HIDDEN.
 */
function packedMask (runs: readonly SlotRun[]): ort.Tensor {
  const T = runs.reduce((n, r) => n + r.layout.rows, 0)
  const S = runs.reduce((n, r) => n + r.position + r.layout.rows, 0)
  const m = new Float32Array(T * S).fill(HIDDEN)
  let rowAt = 0
  let colAt = 0
  for (const { layout, position } of runs) {
    const width = position + layout.rows
    const visible = visibility(layout, position) // (rows, width)
    for (let t = 0; t < layout.rows; t++) {
      for (let c = 0; c < width; c++) if (visible[t * width + c] === 1) m[(rowAt + t) * S + colAt + c] = 0
    }
    rowAt += layout.rows
    colAt += width
  }
  return new ort.Tensor('float32', m, [1, 1, 1, T, S])
}

/** SpanRunner.load hands out a GpuSpanRunner as a SpanRunner: this fails to compile if their public surfaces drift apart. */
type Surface<T> = { [K in keyof T]: T[K] }
export const gpuRunnerHasSpanRunnerSurface: GpuSpanRunner extends Surface<SpanRunner> ? true : never = true
