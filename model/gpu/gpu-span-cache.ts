import type * as ort from 'onnxruntime-node'
import { ShapeError } from '../errors.js'
import { SpanCache } from '../kv-cache.js'

/** One block's cache as the GPU span graph returns it. */
export interface GpuKv {
  /** (1,Hkv,D,S') keys after RoPE, transposed */ readonly key: ort.Tensor
  /** (1,Hkv,S',D) */ readonly value: ort.Tensor
}

/**
 * Caches holding each device tensor beyond the first. A graph run never writes its past
 * tensors, it returns new presents, so a cache adopting another's prefix shares its tensors
 * (no copy) and a tensor is freed when its last holder lets go.
 */
const extraHolders = new WeakMap<ort.Tensor, number>()

function hold (kv: GpuKv): void {
  for (const t of [kv.key, kv.value]) extraHolders.set(t, (extraHolders.get(t) ?? 0) + 1)
}

function letGo (kv: GpuKv): void {
  for (const t of [kv.key, kv.value]) {
    const extra = extraHolders.get(t) ?? 0
    if (extra > 0) extraHolders.set(t, extra - 1)
    else t.dispose()
  }
}

/**
 * The caches of a span kept as ORT tensors (on the GPU when the runner's device is one),
 * addressed by position like SpanCache: slot p holds the token at position p. The tensors
 * may hold more rows than `length` after a rollback; the graph slices them to `length`, so
 * truncation is free. Extends SpanCache only so that callers typed against it accept this
 * one: the CPU row buffers are empty and `block()` is refused.
 */
export class GpuSpanCache extends SpanCache {
  readonly #rowBytes: number
  #blocks: GpuKv[] | undefined
  #length = 0

  /** `rowSize` = Hkv*D floats per position per block. */
  constructor (start: number, end: number, rowSize: number) {
    super(start, end, 0)
    this.#rowBytes = rowSize * 4
  }

  override get length (): number { return this.#length }

  /** The tensors of every block, in block order; undefined while the cache is empty. */
  get blocks (): readonly GpuKv[] | undefined { return this.#length === 0 ? undefined : this.#blocks }

  override truncate (length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.#length) throw new ShapeError(`Cannot truncate cache to ${length}: it holds ${this.#length} positions`)
    this.#length = length
  }

  /** Takes the graph's presents (`length` rows each) and frees the tensors they replace. */
  replace (blocks: GpuKv[], length: number): void {
    if (blocks.length !== this.end - this.start) throw new ShapeError(`Cannot store ${blocks.length} blocks in a cache of ${this.end - this.start}`)
    const old = this.#blocks
    this.#blocks = blocks
    this.#length = length
    for (const kv of old ?? []) letGo(kv)
  }

  /** Holds the first `length` positions of `source` (same blocks) by sharing its tensors. */
  override copyPrefix (source: SpanCache, length: number): void {
    if (!(source instanceof GpuSpanCache)) throw new ShapeError('Cannot copy a CPU cache into a GPU cache')
    this.checkCopy(source, length)
    if (source === this) { this.#length = length; return }
    const shared = length === 0 ? [] : source.#blocks ?? []
    for (const kv of shared) hold(kv)
    for (const kv of this.#blocks ?? []) letGo(kv)
    this.#blocks = shared.length === 0 ? undefined : [...shared]
    this.#length = length
  }

  override block (index: number): never {
    throw new ShapeError(`Block ${index} of a GPU cache has no CPU rows: its keys and values live on the device`)
  }

  /** Bytes held on the device: the rows of the tensors now kept. */
  override get byteSize (): number {
    const rows = this.#blocks?.[0]?.key.dims[3] ?? 0
    return 2 * (this.end - this.start) * rows * this.#rowBytes
  }

  /** Frees the device tensors now rather than at garbage collection. */
  override dispose (): void {
    for (const kv of this.#blocks ?? []) letGo(kv)
    this.#blocks = undefined
    this.#length = 0
  }
}
