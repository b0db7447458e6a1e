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
import { buildKvPackGraph, buildKvUnpackGraph, kvPackNames as packNames } from './gpu-kv-pack.js'
import { buildGpuSpanGraph, gpuSpanNames as names } from './gpu-span-graph.js'

/** Additive mask value for hidden slots: finite, so no kernel sees an infinity. */
const HIDDEN = -1e30

/**
 * Runs blocks [start, end) as ONE onnxruntime session whose KV cache stays on the device:
 * each run feeds the previous run's present keys/values (gpu-buffer tensors) back as its
 * pasts, and only the final hidden state (1,T,C) is copied back. Rotary tables and the
 * causal mask are built here, so no int64 shape arithmetic runs between GPU kernels.
 * Same surface as SpanRunner; a session must cover the whole span.
 *
 * Several sessions' runs go as one run of the same graph (forwardPacked, batched decode: on the
 * WebGPU EP a decode step is made of kernel dispatches, which the sessions then share): a small
 * graph puts their caches side by side, the span graph runs over them with a mask that keeps
 * each session's rows to its own columns, and another small graph takes each session's
 * columns back out (model/gpu/gpu-kv-pack.ts). The weights stay on the device once.
 */
export class GpuSpanRunner {
  readonly config: LlamaConfig
  readonly start: number
  readonly end: number
  /** Most sessions' runs forwardPacked takes at once (SpanRunnerInit.packLimit). */
  readonly packLimit: number
  readonly #session: ort.InferenceSession
  /** By session count, 2..packLimit: the graphs that pack and unpack caches. */
  readonly #packers: ReadonlyMap<number, Packer>
  readonly #invFreq: Float32Array

  private constructor (config: LlamaConfig, start: number, end: number, session: ort.InferenceSession, packers: ReadonlyMap<number, Packer>) {
    this.config = config
    this.start = start
    this.end = end
    this.#session = session
    this.#packers = packers
    this.packLimit = Math.max(1, ...packers.keys())
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
    const session = await deviceSession(buildGpuSpanGraph(cfg, start, weights), init, blocks.flatMap(b => [names.presentKey(b), names.presentValue(b)]))
    const packers = new Map<number, Packer>()
    for (let n = 2; n <= Math.floor(init.packLimit ?? 1); n++) {
      packers.set(n, {
        pack: await deviceSession(buildKvPackGraph(cfg, start, end, n), init, blocks.flatMap(b => [packNames.packedKey(b), packNames.packedValue(b)])),
        unpack: await deviceSession(buildKvUnpackGraph(cfg, start, end, n), init, blocks.flatMap(b => Array.from({ length: n }, (_, s) => [packNames.presentKey(b, s), packNames.presentValue(b, s)]).flat()))
      })
    }
    return new GpuSpanRunner(cfg, start, end, session, packers)
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

  /**
   * Several sessions' runs as one: each item's hidden (1,T_i,C) at its own position over its own
   * cache -> each item's hidden (1,T_i,C). At most `packLimit` items; chains only. Each cache is
   * truncated to its position first; on failure every one is left there.
   */
  async forwardPacked (items: ReadonlyArray<{ hidden: Float32Array, cache: SpanCache, position: number }>, signal?: AbortSignal): Promise<Float32Array[]> {
    const { hiddenSize: C, numKvHeads: Hkv, headDim: D } = this.config
    if (items.length === 1) return [await this.forward((items[0] as PackItem).hidden, (items[0] as PackItem).cache, (items[0] as PackItem).position, signal !== undefined ? { signal } : {})]
    const packer = this.#packers.get(items.length)
    if (packer === undefined) throw new ShapeError(`Cannot pack ${items.length} runs: this GPU span packs at most ${this.packLimit}`)
    for (const { hidden, cache, position } of items) {
      if (!(cache instanceof GpuSpanCache)) throw new ShapeError('Cannot run a GPU span on a cache made by a CPU runner')
      if (hidden.length === 0 || hidden.length % C !== 0) throw new ShapeError(`Cannot forward hidden of ${hidden.length} values: not (1, T, ${C})`)
      if (position > cache.length) throw new ShapeError(`Cannot run from position ${position}: the cache ends at ${cache.length}`)
    }
    const caches = items.map(it => it.cache as GpuSpanCache)
    if (new Set(caches).size !== caches.length) throw new ShapeError('Cannot pack two runs over one cache')
    signal?.throwIfAborted()
    for (const { cache, position } of items) cache.truncate(position)
    const rows = items.map(it => it.hidden.length / C)
    const T = rows.reduce((a, b) => a + b, 0)
    const pasts = caches.map(c => c.blocks) // undefined: an empty cache
    const widths = pasts.map(p => p?.[0]?.key.dims[3] ?? 0) // rows each past tensor holds (its length or more)
    const P = widths.reduce((a, b) => a + b, 0)

    const packFeeds: Record<string, ort.Tensor> = {}
    for (let b = this.start; b < this.end; b++) {
      for (const [s, past] of pasts.entries()) {
        const kv = past?.[b - this.start]
        packFeeds[packNames.pastKey(b, s)] = kv?.key ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, D, 0])
        packFeeds[packNames.pastValue(b, s)] = kv?.value ?? new ort.Tensor('float32', new Float32Array(0), [1, Hkv, 0, D])
      }
    }
    const temporaries: ort.Tensor[] = []
    try {
      const packed = await packer.pack.run(packFeeds)
      temporaries.push(...Object.values(packed))
      const [cos, sin, rowIndex] = this.#rotary(items.flatMap((it, s) => Array.from({ length: rows[s] as number }, (_, j) => it.position + j)))
      const feeds: Record<string, ort.Tensor> = {
        [names.hidden]: new ort.Tensor('float32', concatRows(items.map(it => it.hidden)), [1, T, C]),
        [names.cos]: cos,
        [names.sin]: sin,
        [names.rows]: rowIndex,
        [names.mask]: packedMask(items.map(it => it.position), rows, widths),
        [names.pastLen]: new ort.Tensor('int64', BigInt64Array.of(BigInt(P)), [1])
      }
      for (let b = this.start; b < this.end; b++) {
        feeds[names.pastKey(b)] = packed[packNames.packedKey(b)] as ort.Tensor
        feeds[names.pastValue(b)] = packed[packNames.packedValue(b)] as ort.Tensor
      }
      const out = await this.#session.run(feeds)
      const x = readFloats(out[names.hiddenOut], names.hiddenOut)
      if (x.length !== T * C) throw new ShapeError(`Span output has ${x.length} values, expected ${T * C}`)
      const unpackFeeds: Record<string, ort.Tensor> = {}
      for (let b = this.start; b < this.end; b++) {
        unpackFeeds[packNames.packedKey(b)] = out[names.presentKey(b)] as ort.Tensor
        unpackFeeds[packNames.packedValue(b)] = out[names.presentValue(b)] as ort.Tensor
        temporaries.push(unpackFeeds[packNames.packedKey(b)] as ort.Tensor, unpackFeeds[packNames.packedValue(b)] as ort.Tensor)
      }
      // session s's columns: its past's first `position` (of `width`), then its rows among the new ones
      let pastAt = 0
      let rowAt = 0
      for (const [s, { position }] of items.entries()) {
        const own = [...Array.from({ length: position }, (_, j) => pastAt + j), ...Array.from({ length: rows[s] as number }, (_, j) => P + rowAt + j)]
        unpackFeeds[packNames.columns(s)] = new ort.Tensor('int64', BigInt64Array.from(own, BigInt), [own.length])
        pastAt += widths[s] as number
        rowAt += rows[s] as number
      }
      const presents = await packer.unpack.run(unpackFeeds)
      for (const [s, cache] of caches.entries()) {
        const blocks: GpuKv[] = []
        for (let b = this.start; b < this.end; b++) blocks.push({ key: presents[packNames.presentKey(b, s)] as ort.Tensor, value: presents[packNames.presentValue(b, s)] as ort.Tensor })
        cache.replace(blocks, (items[s] as PackItem).position + (rows[s] as number))
      }
      let at = 0
      return rows.map(n => x.slice(C * at, C * (at += n)))
    } finally {
      for (const t of temporaries) t.dispose()
    }
  }

  async release (): Promise<void> {
    await this.#session.release()
    for (const { pack, unpack } of this.#packers.values()) { await pack.release(); await unpack.release() }
  }
}

interface PackItem { readonly hidden: Float32Array, readonly cache: SpanCache, readonly position: number }

/** The graphs that put n sessions' caches side by side and take them apart again. */
interface Packer {
  readonly pack: ort.InferenceSession
  readonly unpack: ort.InferenceSession
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

/**
 * (1,1,1,T,S) additive mask of a packed run, S = the packed pasts' P columns (session s's
 * `widths[s]`, of which its first `positions[s]` are its cache) and then the T new rows: a
 * session's row sees its cache and its own rows up to itself; every other column is HIDDEN.
 */
function packedMask (positions: readonly number[], rows: readonly number[], widths: readonly number[]): ort.Tensor {
  const T = rows.reduce((a, b) => a + b, 0)
  const P = widths.reduce((a, b) => a + b, 0)
  const S = P + T
  const m = new Float32Array(T * S).fill(HIDDEN)
  let pastAt = 0
  let rowAt = 0
  for (const [s, n] of rows.entries()) {
    for (let j = 0; j < n; j++) {
      const r = rowAt + j
      m.fill(0, r * S + pastAt, r * S + pastAt + (positions[s] as number))
      m.fill(0, r * S + P + rowAt, r * S + P + r + 1)
    }
    pastAt += widths[s] as number
    rowAt += n
  }
  return new ort.Tensor('float32', m, [1, 1, 1, T, S])
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
