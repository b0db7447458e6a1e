/**
 * A long run (a prompt) computes in pieces of about PIECE_TARGET_MS, one compute-queue turn
 * each: between pieces the server's event loop answers (pings, frames) and other sessions'
 * runs take their turns, and the client hears how far the run got. onnxruntime computes on the
 * main thread, so without pieces a long prefill on a slow server looks frozen to its clients.
 * Simulated busy time (busyMsPerRow) blocks the event loop as such compute does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { PIECE_TARGET_MS, PROGRESS_EVERY_MS, SessionManager, type RunOutcome } from '../../node/session-manager.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

const C = 64 // hidden size of stories260k

/** Deterministic activations (1,T,C). */
function activations (T: number, seed: number): Float32Array {
  const out = new Float32Array(T * C)
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(i * 0.37 + seed) * 0.5
  return out
}

describe('SessionManager: long runs in pieces', () => {
  let runner: SpanRunner
  beforeAll(async () => { runner = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 2) })
  afterAll(async () => { await runner?.release() })

  const manager = (busyMsPerRow: number): SessionManager =>
    new SessionManager({ modelId: 'stories260k', runner, maxSessions: 4, cacheTokens: 2048, simulatedCompute: { msPerRun: 0, msPerRow: 0, busyMsPerRow } })

  it('a 1.5 s prompt: same output as one pass, the event loop turns between pieces, another session decodes in between, progress is reported', async () => {
    const busyMsPerRow = 5 // 300 rows: 1.5 s of blocking compute, pieces of ~40 rows
    const T = 300
    const m = manager(busyMsPerRow)
    const long = m.open('stories260k', 0, 2, 512)
    const other = m.open('stories260k', 0, 2, 512)
    const x = activations(T, 1)
    const progress: number[] = []
    const finished: string[] = []
    // the event loop's longest stall while the run computes
    let last = performance.now()
    let longestGap = 0
    const ticker = setInterval(() => { const now = performance.now(); longestGap = Math.max(longestGap, now - last); last = now }, 5)
    const outcome = new Promise<RunOutcome>((resolve, reject) => {
      m.enqueue(long, 0, 0, x, undefined, (err, out) => { finished.push('long'); if (err !== undefined) reject(err); else resolve(out as RunOutcome) }, rows => { progress.push(rows) })
    })
    // a decode step of another session, sent while the prompt computes
    await new Promise(resolve => setTimeout(resolve, 50))
    const step = new Promise<RunOutcome>((resolve, reject) => {
      m.enqueue(other, 0, 0, activations(1, 2), undefined, (err, out) => { finished.push('other'); if (err !== undefined) reject(err); else resolve(out as RunOutcome) })
    })
    const [out, decoded] = await Promise.all([outcome, step])
    clearInterval(ticker)

    // the pieces computed what one pass computes, and the cache holds every row
    const whole = await runner.forward(x, runner.newCache(0, 2), 0)
    let maxDiff = 0
    for (let i = 0; i < whole.length; i++) maxDiff = Math.max(maxDiff, Math.abs(whole[i] as number - (out.hidden[i] as number)))
    expect(out.hidden.length).toBe(T * C)
    expect(maxDiff).toBeLessThan(1e-4)
    expect(long.cache.length).toBe(T)
    expect(out.computeMs).toBeGreaterThanOrEqual(T * busyMsPerRow - 5)

    // no stall much over a piece (one pass would stall the loop for all 1.5 s)
    expect(longestGap).toBeLessThan(2.5 * PIECE_TARGET_MS)
    // the other session's step went between two pieces, not after the whole prompt
    expect(finished).toEqual(['other', 'long'])
    expect(decoded.queuedMs).toBeLessThan(2.5 * PIECE_TARGET_MS)
    // progress about once a second, rows done so far
    expect(progress.length).toBeGreaterThanOrEqual(Math.floor(T * busyMsPerRow / PROGRESS_EVERY_MS))
    expect(progress.every((rows, i) => rows > 0 && rows < T && (i === 0 || rows > (progress[i - 1] as number)))).toBe(true)
    expect(m.counters).toMatchObject({ computed: 2, abortedMidRun: 0 })
  })

  it('a cancel between pieces drops the rest, sends nothing and leaves the cache where the run started', async () => {
    const m = manager(5)
    const session = m.open('stories260k', 0, 2, 512)
    // 8 rows cached first, then a 200-row run from position 8
    await new Promise<void>((resolve, reject) => { m.enqueue(session, 0, 0, activations(8, 3), undefined, err => { if (err !== undefined) reject(err); else resolve() }) })
    let reported = false
    m.enqueue(session, 1, 8, activations(200, 4), undefined, () => { reported = true })
    await new Promise(resolve => setTimeout(resolve, 1.5 * PIECE_TARGET_MS)) // a piece or two done
    expect(session.cache.length).toBeGreaterThan(8)
    m.cancel(session, [1])
    await m.whenIdle()
    expect(reported).toBe(false)
    expect(session.cache.length).toBe(8)
    expect(m.counters).toMatchObject({ computed: 1, abortedMidRun: 1, droppedBeforeStart: 0 })
  })
})
