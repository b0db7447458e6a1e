import type * as ort from 'onnxruntime-node'
import { ShapeError } from '../errors.js'
import { SpanCache } from '../kv-cache.js'

/** One block's keys and values on the device, W columns (positions of one or more caches). */
export interface GpuKv {
  /** (1,Hkv,D,W) keys after RoPE, transposed */ readonly key: ort.Tensor
  /** (1,Hkv,W,D) */ readonly value: ort.Tensor
}

/**
 * Device tensors of a span's keys and values that one or more caches read their positions
 * from, each cache knowing its own columns: the caches of sessions batched together
 * (GpuSpanRunner.forwardPacked) and caches that copied another's prefix share one. A run
 * returns the arena's columns with the run's new rows after them (the graph never writes its
 * inputs), so every holder's columns stay where they were. Freed with its last holder, but
 * not while a run reads it (pinned): a session closed mid-run leaves its batch partners' inputs alone.
 */
export class KvArena {
  readonly #holders = new Set<GpuSpanCache>()
  #pins = 0
  #blocks: readonly GpuKv[]

  constructor (blocks: readonly GpuKv[]) {
    this.#blocks = blocks
  }

  /** Per block of the span, in order. */
  get blocks (): readonly GpuKv[] { return this.#blocks }

  /** Columns the tensors hold. */
  get width (): number { return this.#blocks[0]?.key.dims[3] ?? 0 }

  /** One past the highest column a holder reads: columns from here on are dead (rolled back). */
  get usedWidth (): number {
    let used = 0
    for (const h of this.#holders) used = Math.max(used, (h.columns[h.columns.length - 1] ?? -1) + 1)
    return used
  }

  /** Columns the holders read (a prefix two holders share counts twice). */
  get liveColumns (): number {
    let live = 0
    for (const h of this.#holders) live += h.columns.length
    return live
  }

  /** The run's presents replace the tensors: they hold every column below usedWidth where it was. */
  grow (blocks: readonly GpuKv[]): void {
    const old = this.#blocks
    this.#blocks = blocks
    disposeAll(old)
  }

  join (cache: GpuSpanCache): void { this.#holders.add(cache) }

  leave (cache: GpuSpanCache): void {
    this.#holders.delete(cache)
    this.freeIfUnused()
  }

  /** Keeps the tensors while a run reads them, whoever leaves meanwhile. */
  pin (): void { this.#pins++ }

  unpin (): void {
    this.#pins--
    this.freeIfUnused()
  }

  /** Frees the tensors once no cache holds the arena and no run reads it. */
  freeIfUnused (): void {
    if (this.#holders.size > 0 || this.#pins > 0) return
    disposeAll(this.#blocks)
    this.#blocks = []
  }
}

function disposeAll (blocks: readonly GpuKv[]): void {
  for (const kv of blocks) { kv.key.dispose(); kv.value.dispose() }
}

/**
 * The caches of a span kept as ORT tensors (on the GPU when the runner's device is one),
 * addressed by position like SpanCache: position p lives in column `columns[p]` of its arena
 * (columns increase with p). Truncation only forgets columns; a prefix copy shares the
 * source's arena. Extends SpanCache only so that callers typed against it accept this one: the
 * CPU row buffers are empty and `block()` is refused.
 */
export class GpuSpanCache extends SpanCache {
  readonly #rowBytes: number
  #arena: KvArena | undefined
  #columns: number[] = []
  /** Set by dispose(): a run that ends afterwards leaves it empty. */
  #disposed = false

  /** `rowSize` = Hkv*D floats per position per block. */
  constructor (start: number, end: number, rowSize: number) {
    super(start, end, 0)
    this.#rowBytes = rowSize * 4
  }

  override get length (): number { return this.#columns.length }

  /** Where its positions live; undefined before its first run. */
  get arena (): KvArena | undefined { return this.#arena }

  /** The arena column of each position, increasing. */
  get columns (): readonly number[] { return this.#columns }

  override truncate (length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new ShapeError(`Cannot truncate cache to ${length}: it holds ${this.length} positions`)
    this.#columns.length = length
  }

  /** From now on its positions are `columns` (increasing) of `arena` (not once disposed). */
  place (arena: KvArena, columns: number[]): void {
    if (this.#disposed) return
    if (arena !== this.#arena) {
      arena.join(this)
      this.#arena?.leave(this)
      this.#arena = arena
    }
    this.#columns = columns
  }

  /** Holds the first `length` positions of `source` (same blocks) by sharing its arena. */
  override copyPrefix (source: SpanCache, length: number): void {
    if (!(source instanceof GpuSpanCache)) throw new ShapeError('Cannot copy a CPU cache into a GPU cache')
    this.checkCopy(source, length)
    if (source === this) return this.truncate(length)
    if (source.#arena === undefined) return this.dispose()
    this.place(source.#arena, source.#columns.slice(0, length))
  }

  override block (index: number): never {
    throw new ShapeError(`Block ${index} of a GPU cache has no CPU rows: its keys and values live on the device`)
  }

  /** Bytes of the positions it holds (an arena may hold more: rolled-back columns until it is compacted). */
  override get byteSize (): number {
    return 2 * (this.end - this.start) * this.length * this.#rowBytes
  }

  /** Lets go of its arena now (freed with its last holder) rather than at garbage collection; the cache is not used again. */
  override dispose (): void {
    this.#disposed = true
    this.#arena?.leave(this)
    this.#arena = undefined
    this.#columns = []
  }
}
