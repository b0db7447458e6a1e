/**
 * What the client sent into one block boundary, by position: row p is the hidden state
 * (C) that entered the span at position p. Position-addressed like the servers' caches,
 * so after any rollback it holds exactly what a server's cache was built from, and a
 * replacement server can be rebuilt by replaying rows [0, P).
 */
export class HiddenHistory {
  readonly #C: number
  #data: Float32Array
  #length = 0

  constructor (hiddenSize: number) {
    this.#C = hiddenSize
    this.#data = new Float32Array(hiddenSize * 64)
  }

  get length (): number { return this.#length }

  /** Writes rows (T,C) at positions position.. and forgets everything after them. */
  write (position: number, rows: Float32Array): void {
    if (position > this.#length) throw new Error(`Cannot write history at ${position}: it ends at ${this.#length}`)
    const end = position * this.#C + rows.length
    if (end > this.#data.length) {
      const grown = new Float32Array(Math.max(end, this.#data.length * 2))
      grown.set(this.#data.subarray(0, this.#length * this.#C))
      this.#data = grown
    }
    this.#data.set(rows, position * this.#C)
    this.#length = end / this.#C
  }

  /** A copy of rows [from, to) as (1, to-from, C). */
  read (from: number, to: number): Float32Array {
    if (from < 0 || to > this.#length || from > to) throw new Error(`Cannot read history [${from}, ${to}): it holds ${this.#length} positions`)
    return this.#data.slice(from * this.#C, to * this.#C)
  }
}
