/**
 * What the client sent into one block boundary, by position: row p is the hidden state
 * (C) that entered the span at position p. Position-addressed like the servers' caches,
 * so after any rollback it holds exactly what a server's cache was built from, and a
 * replacement server can be rebuilt by replaying rows [0, P).
 *
 * Runs write in the order they were submitted (their run ids), as the servers apply them: a
 * write sets its rows and forgets every row after them. But the client learns a boundary's
 * rows when a run's output arrives, and after a failover one run may go on hop by hop while
 * a later one is pushed, so a later run's rows can arrive first (and, before this class
 * knew run ids, failed the generation). So every write names its run, and the history holds
 * what writing them in run order would have left: row p comes from the latest run (by id)
 * among those that started at or before p, and is missing when that run ended before p.
 * Rows not written yet read as an error, never as zeros.
 */
export class HiddenHistory {
  readonly #C: number
  #data: Float32Array
  /**
   * Per row below the length: the run that decides it (the latest that started at or before
   * it); NO_RUN when none. Rows past the length belong to #lastRun.
   */
  #owner: Float64Array
  /** Per row: 1 when its values are there; 0 when its owner ended before it, or has not arrived. */
  #present: Uint8Array
  #length = 0
  /** The latest run that wrote: its end is the history's length. */
  #lastRun = NO_RUN

  constructor (hiddenSize: number) {
    this.#C = hiddenSize
    this.#data = new Float32Array(hiddenSize * 64)
    this.#owner = new Float64Array(64).fill(NO_RUN)
    this.#present = new Uint8Array(64)
  }

  /** Positions held: the end of the latest run's rows (some before it may still be missing). */
  get length (): number { return this.#length }

  /**
   * Writes rows (T,C) at positions position.. for run `runId` (fractional ids order writes
   * that belong between two runs; see SwarmTarget's replays). A run later than every
   * earlier write forgets the rows after its own, as a server's cache does; an earlier run's
   * rows arriving late fill in only what no later run has decided.
   */
  write (position: number, rows: Float32Array, runId: number): void {
    const C = this.#C
    if (!(Number.isInteger(position) && position >= 0) || rows.length % C !== 0) {
      throw new RangeError(`Cannot write ${rows.length} values at position ${position}: need a position >= 0 and whole rows of ${C}`)
    }
    const end = position + rows.length / C
    this.#reserve(Math.max(end, this.#length))
    if (runId >= this.#lastRun) {
      // in order: rows between the old end and this run's start stay missing until an earlier
      // run's arrive (rows past the end belong to the latest run, which cut them off)
      this.#owner.fill(this.#lastRun, this.#length, position)
      this.#present.fill(0, this.#length, position)
      this.#data.set(rows, position * C)
      this.#owner.fill(runId, position, end)
      this.#present.fill(1, position, end)
      this.#lastRun = runId
      this.#length = end
      return
    }
    // late: only rows no later run has decided, and only below the latest run's end (it forgot the rest)
    for (let p = position; p < this.#length; p++) {
      if ((this.#owner[p] as number) > runId) continue
      this.#owner[p] = runId
      if (p < end) {
        this.#data.set(rows.subarray((p - position) * C, (p - position + 1) * C), p * C)
        this.#present[p] = 1
      } else {
        this.#present[p] = 0 // in run order this run cut it off; only a later run brings it back
      }
    }
  }

  /** A copy of rows [from, to) as (1, to-from, C); throws when any of them is not there. */
  read (from: number, to: number): Float32Array {
    if (from < 0 || to > this.#length || from > to) throw new Error(`Cannot read history [${from}, ${to}): it holds ${this.#length} positions`)
    const missing = this.#present.subarray(from, to).indexOf(0)
    if (missing >= 0) throw new Error(`Cannot read history [${from}, ${to}): position ${from + missing} has not arrived`)
    return this.#data.slice(from * this.#C, to * this.#C)
  }

  #reserve (rows: number): void {
    if (rows <= this.#owner.length) return
    const capacity = Math.max(rows, this.#owner.length * 2)
    const data = new Float32Array(capacity * this.#C)
    data.set(this.#data)
    this.#data = data
    const owner = new Float64Array(capacity).fill(NO_RUN)
    owner.set(this.#owner)
    this.#owner = owner
    const present = new Uint8Array(capacity)
    present.set(this.#present)
    this.#present = present
  }
}

/** Owner of rows no run has written. */
const NO_RUN = -Infinity
