import * as ort from 'onnxruntime-node'
import type { Checkpoint } from '../checkpoint.js'
import type { LlamaConfig } from '../config.js'
import { ShapeError } from '../errors.js'
import type { SpanCache } from '../kv-cache.js'
import type { SpanRunner, SpanRunnerInit } from '../span-runner.js'
import { concatRows } from '../onnx/linear.js'
import { readFloats } from '../ort-session.js'
import { ropeInverseFrequencies } from '../rope.js'
import { runLayout, type ForwardOptions, type RunLayout } from '../token-tree.js'
import { arenaMask, rotaryInputs } from './gpu-run-inputs.js'
import { GpuSpanCache, KvArena, type GpuKv } from './gpu-span-cache.js'
import { buildKvGatherGraph, kvGatherNames as gatherNames } from './gpu-kv-gather.js'
import { buildGpuSpanGraph, gpuSpanNames as names } from './gpu-span-graph.js'


/** Rolled-back columns an arena may hold beyond twice its live ones before a run moves its caches to fresh tensors. */
const ARENA_SLACK_COLUMNS = 64
/**
 * A run of more rows (a prompt) over an arena mostly of other sessions' columns gets its own
 * arena first: each of its rows would attend over every column. Decode-sized runs (the
 * session manager packs chains of up to 16 rows) stay: a few rows over more columns cost less
 * than a gather.
 */
const SHARED_ARENA_MAX_ROWS = 16

/** One cache's run: its rows (1,T,C), where they start, and their layout (a chain or a token tree). */
interface CacheRun {
  readonly hidden: Float32Array
  readonly cache: GpuSpanCache
  readonly position: number
  readonly layout: RunLayout
}

/**
 * Runs blocks [start, end) as one onnxruntime session whose KV cache stays on the device:
 * each run feeds the previous run's present keys/values (gpu-buffer tensors) back as its
 * pasts, and only the final hidden state (1,T,C) is copied back. Rotary tables and the
 * mask are built here, so no int64 shape arithmetic runs between GPU kernels.
 * Same surface as SpanRunner; a session must cover the whole span.
 *
 * Several sessions' runs go as one run of the same graph (forwardPacked, batched decode: on the
 * WebGPU EP a decode step is made of kernel dispatches, which the sessions then share). Their
 * caches then live side by side in one arena (model/gpu/gpu-span-cache.ts), and the mask keeps
 * each session's rows to its own columns; sessions that keep meeting in batches run straight
 * from it. Caches of different arenas are first gathered into one (model/gpu/gpu-kv-gather.ts).
 * The weights are on the device once.
 */
export class GpuSpanRunner {
  readonly config: LlamaConfig
  readonly start: number
  readonly end: number
  /** Most sessions' runs forwardPacked takes at once (SpanRunnerInit.packLimit). */
  readonly packLimit: number
  /**
   * No bound on the positions a packed run reads: every run of this graph copies its pasts
   * into its presents anyway, lone or packed, and sessions that keep meeting run from their
   * shared arena without a gather.
   */
  readonly maxPackedPositions: number = Number.POSITIVE_INFINITY
  readonly #session: ort.InferenceSession
  /** By source count, 1..packLimit: the graphs that gather arenas' columns into new tensors. */
  readonly #gathers: readonly ort.InferenceSession[]
  readonly #invFreq: Float32Array

  private constructor (config: LlamaConfig, start: number, end: number, session: ort.InferenceSession, gathers: ort.InferenceSession[]) {
    this.config = config
    this.start = start
    this.end = end
    this.#session = session
    this.#gathers = gathers
    this.packLimit = gathers.length
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
    const blocks = Array.from({ length: end - start }, (_, i) => start + i)
    const session = await deviceSession(buildGpuSpanGraph(cfg, start, weights, init.quantization), init, blocks.flatMap(b => [names.presentKey(b), names.presentValue(b)]))
    const gathers: ort.InferenceSession[] = []
    for (let n = 1; n <= Math.max(1, Math.floor(init.packLimit ?? 1)); n++) {
      gathers.push(await deviceSession(buildKvGatherGraph(cfg, start, end, n), init, blocks.flatMap(b => [gatherNames.key(b), gatherNames.value(b)])))
    }
    return new GpuSpanRunner(cfg, start, end, session, gathers)
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
   * One ORT run (two where its arena is compacted first), so `signal` is checked once before
   * it; a failed run leaves the cache truncated to `position`.
   */
  async forward (hidden: Float32Array, cache: SpanCache, position: number, opts: ForwardOptions = {}): Promise<Float32Array> {
    const run = this.#cacheRun(hidden, cache, position, opts.parents)
    opts.signal?.throwIfAborted()
    return (await this.#run([run]))[0] as Float32Array
  }

  /**
   * Several sessions' runs as one: each item's hidden (1,T_i,C) at its own position over its own
   * cache -> each item's hidden (1,T_i,C). At most `packLimit` items; chains only. Each cache is
   * truncated to its position first; on failure every one is left there.
   */
  async forwardPacked (items: ReadonlyArray<{ hidden: Float32Array, cache: SpanCache, position: number }>, signal?: AbortSignal): Promise<Float32Array[]> {
    if (items.length > this.packLimit) throw new ShapeError(`Cannot pack ${items.length} runs: this GPU span packs at most ${this.packLimit}`)
    const runs = items.map(it => this.#cacheRun(it.hidden, it.cache, it.position, undefined))
    if (new Set(runs.map(r => r.cache)).size !== runs.length) throw new ShapeError('Cannot pack two runs over one cache')
    signal?.throwIfAborted()
    return await this.#run(runs)
  }

  /** Checks a run against its cache and lays out its rows. */
  #cacheRun (hidden: Float32Array, cache: SpanCache, position: number, parents: readonly number[] | undefined): CacheRun {
    const C = this.config.hiddenSize
    if (!(cache instanceof GpuSpanCache)) throw new ShapeError('Cannot run a GPU span on a cache made by a CPU runner')
    if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
    if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
    return { hidden, cache, position, layout: runLayout(position, hidden.length / C, parents) }
  }

  /**
   * One run of the span graph over every cache of `runs`. Where they all read one arena (or
   * none), the graph takes its used columns as they are and its presents become the arena's
   * tensors; otherwise, or where most of that arena is rolled back, their columns are gathered
   * into new tensors first, which become a new arena. Each cache then holds its positions up to
   * its run's start and its run's trunk rows.
   */
  async #run (runs: readonly CacheRun[]): Promise<Float32Array[]> {
    const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = this.config
    for (const { cache, position } of runs) cache.truncate(position)
    const sources = [...new Set(runs.filter(r => r.position > 0).map(r => r.cache.arena as KvArena))]
    const shared = sources.length === 1 ? sources[0] as KvArena : undefined
    const rowCount = runs.reduce((n, r) => n + r.layout.rows, 0)
    const ownColumns = runs.reduce((n, r) => n + r.position, 0) + rowCount
    const inPlace = sources.length === 0 || (shared !== undefined &&
      shared.usedWidth <= 2 * shared.liveColumns + ARENA_SLACK_COLUMNS && // mostly live columns
      (rowCount <= SHARED_ARENA_MAX_ROWS || shared.usedWidth <= 2 * ownColumns + ARENA_SLACK_COLUMNS)) // a prompt over mostly its own
    const temporaries: ort.Tensor[] = []
    for (const a of sources) a.pin()
    try {
      // the pasts the graph reads, and each cache's columns among them
      let pasts: readonly GpuKv[] | undefined
      let width: number
      let pastColumns: number[][]
      if (inPlace) {
        pasts = shared?.blocks
        width = shared?.usedWidth ?? 0
        pastColumns = runs.map(r => [...r.cache.columns])
      } else {
        const gathered = runs.filter(r => r.position > 0)
        const out = await (this.#gathers[gathered.length - 1] as ort.InferenceSession).run(this.#gatherFeeds(gathered))
        pasts = this.#blocksOf(out, gatherNames.key, gatherNames.value)
        temporaries.push(...pasts.flatMap(kv => [kv.key, kv.value]))
        let at = 0
        pastColumns = runs.map(r => Array.from({ length: r.position }, () => at++))
        width = at
      }
      const rows = runs.map(r => r.layout.rows)
      const T = rows.reduce((a, b) => a + b, 0)
      const [cos, sin, rowIndex] = rotaryInputs(this.#invFreq, runs.flatMap(r => r.layout.positions))
      const feeds: Record<string, ort.Tensor> = {
        [names.hidden]: new ort.Tensor('float32', runs.length === 1 ? (runs[0] as CacheRun).hidden : concatRows(runs.map(r => r.hidden)), [1, T, C]),
        [names.cos]: cos,
        [names.sin]: sin,
        [names.rows]: rowIndex,
        [names.mask]: arenaMask(runs, pastColumns, width),
        [names.pastLen]: new ort.Tensor('int64', BigInt64Array.of(BigInt(width)), [1])
      }
      for (let b = this.start; b < this.end; b++) {
        const kv = pasts?.[b - this.start]
        feeds[names.pastKey(b)] = kv?.key ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, D, 0])
        feeds[names.pastValue(b)] = kv?.value ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, 0, D])
      }
      const out = await this.#session.run(feeds)
      const presents = this.#blocksOf(out, names.presentKey, names.presentValue)
      const x = readFloats(out[names.hiddenOut], names.hiddenOut)
      if (x.length !== T * C) {
        temporaries.push(...presents.flatMap(kv => [kv.key, kv.value]))
        throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
      }
      // presents: the `width` past columns, then every run's rows; a run keeps its trunk rows
      let arena = shared
      if (inPlace && arena !== undefined) arena.grow(presents)
      else arena = new KvArena(presents)
      let rowAt = 0
      for (const [i, { cache, layout }] of runs.entries()) {
        const own = pastColumns[i] as number[]
        for (let j = 0; j < layout.trunk; j++) own.push(width + rowAt + j)
        cache.place(arena, own)
        rowAt += layout.rows
      }
      arena.freeIfUnused() // every cache of the run was closed meanwhile
      if (runs.length === 1) return [x]
      let at = 0
      return rows.map(n => x.slice(C * at, C * (at += n)))
    } finally {
      for (const t of temporaries) t.dispose()
      for (const a of sources) a.unpin()
    }
  }

  /** The gather graph's feeds: each run's positions up to its start, from its arena. */
  #gatherFeeds (runs: readonly CacheRun[]): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {}
    for (const [s, { cache, position }] of runs.entries()) {
      feeds[gatherNames.columns(s)] = new ort.Tensor('int64', BigInt64Array.from(cache.columns.slice(0, position), BigInt), [position])
      const blocks = (cache.arena as KvArena).blocks
      for (let b = this.start; b < this.end; b++) {
        const kv = blocks[b - this.start] as GpuKv
        feeds[gatherNames.sourceKey(b, s)] = kv.key
        feeds[gatherNames.sourceValue(b, s)] = kv.value
      }
    }
    return feeds
  }

  /** A graph's per-block key and value outputs, in block order. */
  #blocksOf (out: ort.InferenceSession.ReturnType, key: (b: number) => string, value: (b: number) => string): GpuKv[] {
    const blocks: GpuKv[] = []
    for (let b = this.start; b < this.end; b++) {
      const k = out[key(b)]
      const v = out[value(b)]
      if (k === undefined || v === undefined) throw new Error(`ORT output "${key(b)}" or "${value(b)}" is missing`)
      blocks.push({ key: k, value: v })
    }
    return blocks
  }

  async release (): Promise<void> {
    await this.#session.release()
    for (const g of this.#gathers) await g.release()
  }
}

/** An ORT session on the runner's device whose `onDevice` outputs stay there (gpu-buffer); the rest come to the host. */
async function deviceSession (graph: Uint8Array, init: SpanRunnerInit, onDevice: readonly string[]): Promise<ort.InferenceSession> {
  const device = init.device ?? 'webgpu'
  const gpu = device !== 'cpu'
  return await ort.InferenceSession.create(graph, {
    executionProviders: gpu ? [device, 'cpu'] : ['cpu'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...(init.threads !== undefined ? { intraOpNumThreads: init.threads } : {}),
    ...(gpu ? { preferredOutputLocation: Object.fromEntries(onDevice.map(name => [name, 'gpu-buffer' as const])) } : {}),
    ...(init.spinning === true ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } })
  })
}

/** SpanRunner.load hands out a GpuSpanRunner as a SpanRunner: this fails to compile if their public surfaces drift apart. */
type Surface<T> = { [K in keyof T]: T[K] }
export const gpuRunnerHasSpanRunnerSurface: GpuSpanRunner extends Surface<SpanRunner> ? true : never = true
