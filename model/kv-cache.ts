import { ShapeError } from './errors.js'

/**
 * Keys or values of one block for one sequence (batch 1), addressed by position:
 * slot p holds the token at position p. Layout (capacity, Hkv, D), so that the first
 * `length` positions are one contiguous prefix: truncation is free and the graph reads
 * a view of the buffer without a copy.
 */
export class KvBuffer {
  readonly rowSize: number
  #data: Float32Array
  #length = 0

  constructor (rowSize: number, initialCapacity = 64) {
    this.rowSize = rowSize
    this.#data = new Float32Array(rowSize * initialCapacity)
  }

  get length (): number { return this.#length }

  /** (length, Hkv, D) view of the cached rows; valid until the next append. */
  view (): Float32Array {
    return this.#data.subarray(0, this.#length * this.rowSize)
  }

  /** Forgets every position >= `length` (position-addressed rollback). */
  truncate (length: number): void {
    if (length < 0 || length > this.#length) throw new ShapeError(`Cannot truncate cache to ${length}: it holds ${this.#length} positions`)
    this.#length = length
  }

  /** Appends rows (T, Hkv, D) at the end. */
  append (rows: Float32Array): void {
    if (rows.length % this.rowSize !== 0) throw new ShapeError(`Cannot append ${rows.length} values to a cache with rows of ${this.rowSize}`)
    const needed = this.#length * this.rowSize + rows.length
    if (needed > this.#data.length) {
      const grown = new Float32Array(Math.max(needed, this.#data.length * 2))
      grown.set(this.view())
      this.#data = grown
    }
    this.#data.set(rows, this.#length * this.rowSize)
    this.#length += rows.length / this.rowSize
  }

  /** Replaces every row by the first `length` rows of `source` (same row size). */
  copyPrefix (source: KvBuffer, length: number): void {
    if (source.rowSize !== this.rowSize) throw new ShapeError(`Cannot copy rows of ${source.rowSize} values into a cache with rows of ${this.rowSize}`)
    if (!Number.isInteger(length) || length < 0 || length > source.length) throw new ShapeError(`Cannot copy ${length} positions: the source holds ${source.length}`)
    if (source === this) return this.truncate(length)
    this.#length = 0
    this.append(source.view().subarray(0, length * this.rowSize))
  }

  /** Bytes held (capacity, not length). */
  get byteSize (): number { return this.#data.byteLength }
}

/** The caches of a contiguous run of blocks, all at the same length. */
export class SpanCache {
  readonly start: number
  readonly keys: KvBuffer[]
  readonly values: KvBuffer[]

  constructor (start: number, end: number, rowSize: number) {
    this.start = start
    this.keys = Array.from({ length: end - start }, () => new KvBuffer(rowSize))
    this.values = Array.from({ length: end - start }, () => new KvBuffer(rowSize))
  }

  get end (): number { return this.start + this.keys.length }

  /** Positions cached (the same for every block). */
  get length (): number { return this.keys[0]?.length ?? 0 }

  truncate (length: number): void {
    for (const b of this.keys) b.truncate(length)
    for (const b of this.values) b.truncate(length)
  }

  /**
   * Makes this cache hold the first `length` positions of `source`, which covers the same
   * blocks (a session adopting another's prefix): a copy, so either may then roll back or
   * grow on its own.
   */
  copyPrefix (source: SpanCache, length: number): void {
    this.checkCopy(source, length)
    if (source === this) return this.truncate(length) // a session adopting from itself keeps its own prefix
    this.keys.forEach((b, i) => { b.copyPrefix(source.keys[i] as KvBuffer, length) })
    this.values.forEach((b, i) => { b.copyPrefix(source.values[i] as KvBuffer, length) })
  }

  /** ShapeError unless `source` covers the same blocks and holds `length` positions. */
  protected checkCopy (source: SpanCache, length: number): void {
    if (source.start !== this.start || source.end !== this.end) throw new ShapeError(`Cannot copy the cache of blocks [${source.start}, ${source.end}) into one of [${this.start}, ${this.end})`)
    if (!Number.isInteger(length) || length < 0 || length > source.length) throw new ShapeError(`Cannot copy ${length} positions: the source holds ${source.length}`)
  }

  block (index: number): { key: KvBuffer, value: KvBuffer } {
    const key = this.keys[index - this.start]
    const value = this.values[index - this.start]
    if (key === undefined || value === undefined) throw new ShapeError(`Block ${index} is outside cached span [${this.start}, ${this.end})`)
    return { key, value }
  }

  get byteSize (): number {
    return [...this.keys, ...this.values].reduce((n, b) => n + b.byteSize, 0)
  }

  /** Frees device memory at once (GPU caches); CPU caches are left to the garbage collector. */
  dispose (): void {}
}
