/** The merge rules of a BPE model, looked up by the ids of the two symbols. */
export class MergeTable {
  readonly #stride: number
  /** left * stride + right -> rank (0 = merged first) */
  readonly #ranks = new Map<number, number>()
  /** rank -> id of the merged symbol */
  readonly #merged: number[] = []

  /** `stride` must exceed every id that can appear on either side of a merge. */
  constructor (stride: number) {
    this.#stride = stride
  }

  /** Appends the next rule (lowest rank first). A pair listed twice keeps its first rank. */
  add (left: number, right: number, merged: number): void {
    const key = left * this.#stride + right
    if (this.#ranks.has(key)) return
    this.#ranks.set(key, this.#merged.length)
    this.#merged.push(merged)
  }

  /** Rank of merging `left` then `right`, or -1 when no rule joins them. */
  rank (left: number, right: number): number {
    return this.#ranks.get(left * this.#stride + right) ?? -1
  }

  /** Id of the symbol that the rule of rank `rank` produces. */
  mergedId (rank: number): number {
    return this.#merged[rank] as number
  }

  get size (): number {
    return this.#merged.length
  }
}

/**
 * Applies BPE merges to one word: repeatedly joins the adjacent pair with the lowest rank
 * (leftmost first on ties) until no rule applies. A doubly linked list of symbols and a binary
 * min-heap of candidate pairs make this O(n log n) in the word length n, so a whole
 * paragraph can be one word (SentencePiece-style tokenizers have no pre-tokenizer).
 *
 * symbols (n,) ids -> merged ids (m,), m <= n
 */
export function applyMerges (symbols: readonly number[], table: MergeTable): number[] {
  const n = symbols.length
  if (n < 2 || table.size === 0) return symbols.slice()
  const ids = Int32Array.from(symbols) // (n,) symbol id at each position; merged symbols live at their left position
  const prev = new Int32Array(n) // (n,) previous live position or -1
  const next = new Int32Array(n) // (n,) next live position or -1
  const alive = new Uint8Array(n).fill(1)
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1
    next[i] = i + 1 < n ? i + 1 : -1
  }

  // Heap entries encode (rank, pos) as rank * n + pos: ordering by the number orders by rank, then position.
  const heap: number[] = []
  const offer = (pos: number): void => {
    const right = next[pos] as number
    if (pos < 0 || right < 0) return
    const rank = table.rank(ids[pos] as number, ids[right] as number)
    if (rank >= 0) heapPush(heap, rank * n + pos)
  }
  for (let i = 0; i + 1 < n; i++) offer(i)

  while (heap.length > 0) {
    const key = heapPop(heap)
    const pos = key % n
    const rank = (key - pos) / n
    const right = next[pos] as number
    // Stale entry: the left symbol was absorbed, or either side changed since the pair was offered.
    if (alive[pos] === 0 || right < 0 || table.rank(ids[pos] as number, ids[right] as number) !== rank) continue
    ids[pos] = table.mergedId(rank)
    alive[right] = 0
    const after = next[right] as number
    next[pos] = after
    if (after >= 0) prev[after] = pos
    offer(prev[pos] as number)
    offer(pos)
  }

  const out: number[] = []
  for (let i = 0; i >= 0; i = next[i] as number) out.push(ids[i] as number)
  return out
}

function heapPush (heap: number[], key: number): void {
  let i = heap.length
  heap.push(key)
  while (i > 0) {
    const parent = (i - 1) >> 1
    const p = heap[parent] as number
    if (p <= key) break
    heap[i] = p
    i = parent
  }
  heap[i] = key
}

function heapPop (heap: number[]): number {
  const top = heap[0] as number
  const last = heap.pop() as number
  const size = heap.length
  if (size === 0) return top
  let i = 0
  for (;;) {
    const l = 2 * i + 1
    if (l >= size) break
    const r = l + 1
    const child = r < size && (heap[r] as number) < (heap[l] as number) ? r : l
    if ((heap[child] as number) >= last) break
    heap[i] = heap[child] as number
    i = child
  }
  heap[i] = last
  return top
}
