import { describe, expect, it } from 'vitest'
import { HiddenHistory } from '../../client/swarm/hidden-history.js'
import { createRng } from '../../client/sampling/rng.js'

const C = 3
/** Rows (T, C) whose values name the run and the position: run r, position p -> r * 1000 + p. */
const rowsOf = (runId: number, position: number, T: number): Float32Array => {
  const out = new Float32Array(T * C)
  for (let t = 0; t < T; t++) out.fill(runId * 1000 + position + t, t * C, (t + 1) * C)
  return out
}
/** The value each position holds, or null when it is missing. */
const snapshot = (h: HiddenHistory): Array<number | null> => Array.from({ length: h.length }, (_, p) => {
  try {
    return h.read(p, p + 1)[0] as number
  } catch {
    return null
  }
})

interface Write { runId: number, position: number, T: number }

/** What the servers' caches hold: the writes applied one by one in run order (a gap stays missing). */
function inRunOrder (writes: readonly Write[]): Array<number | null> {
  const rows: Array<number | null> = []
  for (const w of [...writes].sort((a, b) => a.runId - b.runId)) {
    rows.length = Math.max(rows.length, w.position)
    for (let p = 0; p < w.position; p++) rows[p] = rows[p] ?? null
    rows.length = w.position
    for (let t = 0; t < w.T; t++) rows.push(w.runId * 1000 + w.position + t)
  }
  return rows
}

describe('HiddenHistory', () => {
  it('in order: each run forgets the rows after its own, as a server\'s cache does', () => {
    const h = new HiddenHistory(C)
    h.write(0, rowsOf(0, 0, 5), 0)
    h.write(5, rowsOf(1, 5, 3), 1)
    h.write(6, rowsOf(2, 6, 1), 2) // a rollback to 6
    expect(h.length).toBe(7)
    expect(snapshot(h)).toEqual([0, 1, 2, 3, 4, 1005, 2006])
    expect(() => h.read(0, 8)).toThrow(/holds 7 positions/)
  })

  it('a later run\'s rows that arrive first wait for the earlier run\'s: no error, and the gap reads as missing until then', () => {
    const h = new HiddenHistory(C)
    h.write(0, rowsOf(0, 0, 13), 0)
    h.write(17, rowsOf(2, 17, 2), 2) // run 2 before run 1
    expect(h.length).toBe(19)
    expect(() => h.read(0, 19)).toThrow(/position 13 has not arrived/)
    h.write(13, rowsOf(1, 13, 4), 1)
    expect(snapshot(h)).toEqual(inRunOrder([{ runId: 0, position: 0, T: 13 }, { runId: 2, position: 17, T: 2 }, { runId: 1, position: 13, T: 4 }]))
    expect(h.read(0, 19).length).toBe(19 * C)
  })

  it('an earlier run arriving late does not cut off a later run\'s rows (the soak\'s "Cannot write history at 17: it ends at 13")', () => {
    const h = new HiddenHistory(C)
    h.write(0, rowsOf(0, 0, 13), 0) // then a rollback: run 1 starts again at 10
    h.write(13, rowsOf(2, 13, 4), 2)
    h.write(10, rowsOf(1, 10, 3), 1)
    expect(h.length).toBe(17)
    h.write(17, rowsOf(3, 17, 1), 3)
    expect(snapshot(h)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1010, 1011, 1012, 2013, 2014, 2015, 2016, 3017])
  })

  it('a write placed between two runs (a replay) orders by its fractional id', () => {
    const h = new HiddenHistory(C)
    h.write(4, rowsOf(7, 4, 2), 7) // run 7's rows arrive before the replay of [0, 4)
    h.write(0, rowsOf(6.5, 0, 4), 6.5)
    h.write(0, rowsOf(3, 0, 6), 3) // a stale run of an older route: it decides nothing now
    expect(snapshot(h)).toEqual([6500, 6501, 6502, 6503, 7004, 7005])
  })

  it('rows a later run cut off stay cut off when an earlier run arrives late, even past a gap', () => {
    const writes = [{ runId: 0, position: 0, T: 5 }, { runId: 2, position: 0, T: 2 }, { runId: 3, position: 4, T: 1 }, { runId: 1, position: 2, T: 2 }]
    const h = new HiddenHistory(C)
    for (const w of writes) h.write(w.position, rowsOf(w.runId, w.position, w.T), w.runId)
    expect(snapshot(h)).toEqual(inRunOrder(writes))
    expect(snapshot(h)).toEqual([2000, 2001, null, null, 3004])
  })

  it('any arrival order leaves what applying the writes in run order leaves', () => {
    const rng = createRng(7)
    const int = (n: number): number => Math.floor(rng.next() * n)
    for (let trial = 0; trial < 2000; trial++) {
      const writes: Write[] = []
      let end = 0
      for (let runId = 0; runId < 2 + int(8); runId++) {
        // mostly the next positions, sometimes a rollback, sometimes past the end (a run whose predecessor never arrives)
        const r = rng.next()
        const position = r < 0.6 ? end : r < 0.9 ? int(end + 1) : end + 1 + int(3)
        const T = 1 + int(4)
        writes.push({ runId, position, T })
        end = position + T
      }
      const arrival = [...writes].sort(() => rng.next() - 0.5)
      const h = new HiddenHistory(C)
      for (const w of arrival) h.write(w.position, rowsOf(w.runId, w.position, w.T), w.runId)
      expect(snapshot(h), JSON.stringify(arrival)).toEqual(inRunOrder(writes))
    }
  })

  it('refuses a negative position or a partial row', () => {
    const h = new HiddenHistory(C)
    expect(() => { h.write(-1, rowsOf(0, 0, 1), 0) }).toThrow(RangeError)
    expect(() => { h.write(0, new Float32Array(4), 0) }).toThrow(/whole rows of 3/)
  })
})
