/**
 * Opportunistic batching of a row-wise computation (the LM head): calls made while one is
 * computing wait, and go together in the next pass. Reading the head's weights bounds its
 * time (131 MB for a 32K x 1024 head), so N sessions of one client (an API server's pooled
 * sessions, a request's n choices) pay about one pass instead of N. A lone call starts at once.
 */

/** rows (T, inWidth) flattened -> rows (T, outWidth) flattened; row t's output depends on row t only. */
export type RowFunction = (rows: Float32Array, T: number) => Promise<Float32Array>

interface Waiting {
  /** (T, inWidth) */
  rows: Float32Array
  resolve: (out: Float32Array) => void
  reject: (err: unknown) => void
}

export class RowBatcher {
  readonly #run: RowFunction
  readonly #inWidth: number
  readonly #outWidth: number
  readonly #maxRows: number
  readonly #waiting: Waiting[] = []
  #busy = false
  /** Passes that carried more than one call (for tests and stats). */
  batchedPasses = 0

  /** `maxRows`: most rows of several calls in one pass (a bigger call still goes, alone). */
  constructor (run: RowFunction, inWidth: number, outWidth: number, maxRows = 64) {
    this.#run = run
    this.#inWidth = inWidth
    this.#outWidth = outWidth
    this.#maxRows = maxRows
  }

  /** rows (T, inWidth) -> (T, outWidth), computed with whatever other calls are waiting. */
  async run (rows: Float32Array): Promise<Float32Array> {
    return await new Promise<Float32Array>((resolve, reject) => {
      this.#waiting.push({ rows, resolve, reject })
      if (!this.#busy) void this.#drain()
    })
  }

  async #drain (): Promise<void> {
    this.#busy = true
    while (this.#waiting.length > 0) {
      const batch = this.#take()
      try {
        const outs = await this.#pass(batch.map(w => w.rows))
        batch.forEach((w, i) => { w.resolve(outs[i] as Float32Array) })
      } catch (err) {
        for (const w of batch) w.reject(err)
      }
    }
    this.#busy = false
  }

  /** The oldest calls whose rows fit `maxRows` together (at least one). */
  #take (): Waiting[] {
    let rows = 0
    let n = 0
    for (const w of this.#waiting) {
      const T = w.rows.length / this.#inWidth
      if (n > 0 && rows + T > this.#maxRows) break
      rows += T
      n++
    }
    return this.#waiting.splice(0, n)
  }

  /** One pass over the calls' rows stacked: (sum T, inWidth) -> each call's (T, outWidth). */
  async #pass (inputs: readonly Float32Array[]): Promise<Float32Array[]> {
    if (inputs.length === 1) {
      const only = inputs[0] as Float32Array
      return [await this.#run(only, only.length / this.#inWidth)]
    }
    this.batchedPasses++
    const total = inputs.reduce((sum, x) => sum + x.length, 0)
    const stacked = new Float32Array(total)
    let at = 0
    for (const x of inputs) { stacked.set(x, at); at += x.length }
    const T = total / this.#inWidth
    const out = await this.#run(stacked, T)
    if (out.length !== T * this.#outWidth) throw new RangeError(`A batched pass returned ${out.length} values, expected ${T} rows of ${this.#outWidth}`)
    const outs: Float32Array[] = []
    let row = 0
    for (const x of inputs) {
      const rows = x.length / this.#inWidth
      outs.push(out.subarray(row * this.#outWidth, (row + rows) * this.#outWidth))
      row += rows
    }
    return outs
  }
}
