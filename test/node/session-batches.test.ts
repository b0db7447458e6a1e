/** The session manager's batches: runs of several sessions in one pass, each outcome its own. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { SpanRunner } from '../../model/span-runner.js'
import { SessionManager, type RunOutcome, type ServerSession } from '../../node/session-manager.js'
import type { PetalError } from '../../protocol/errors.js'
import { BUNDLED_MODEL, maxAbsDiff } from '../helpers/fixtures.js'

const C = 64 // hidden size of stories260k

describe('SessionManager batches', () => {
  let runner: SpanRunner
  beforeAll(async () => { runner = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 2) })
  afterAll(async () => { await runner?.release() })

  /** Queues a run at position 0 and resolves with what it reports (undefined: nothing, as for a cancelled run, after idle). */
  const outcome = async (m: SessionManager, session: ServerSession, runId: number, hidden: Float32Array): Promise<{ err?: PetalError, out?: RunOutcome } | undefined> => {
    return await new Promise(resolve => {
      m.enqueue(session, runId, 0, hidden, undefined, (err, out) => { resolve({ ...(err !== undefined ? { err } : {}), ...(out !== undefined ? { out } : {}) }) })
      void m.whenIdle().then(() => { setImmediate(() => { resolve(undefined) }) })
    })
  }

  it('runs queued behind another run go together; a cancelled one reports nothing and its cache goes back to its start', async () => {
    const m = new SessionManager({ modelId: 'stories260k', runner, maxSessions: 4, cacheTokens: 256 })
    const [a, b, c] = [m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64)]
    // a's prompt runs alone; meanwhile b's and c's wait and then share a pass; c's is cancelled before it ends
    const first = outcome(m, a, 0, new Float32Array(8 * C).fill(0.2))
    const bRun = outcome(m, b, 0, new Float32Array(3 * C).fill(0.3))
    const cRun = outcome(m, c, 5, new Float32Array(2 * C).fill(0.4))
    m.cancel(c, [5]) // c's run is queued: dropped before it starts
    const cAgain = outcome(m, c, 6, new Float32Array(2 * C).fill(0.4))
    expect((await first)?.out?.runId).toBe(0)
    const [bDone, cDone] = [await bRun, await cAgain]
    expect(await cRun).toBeUndefined()
    expect(m.counters.batched).toBe(2)
    expect(m.counters.droppedBeforeStart).toBe(1)
    // each equals its run alone on a fresh cache
    const alone = async (rows: number, value: number): Promise<Float32Array> => await runner.forward(new Float32Array(rows * C).fill(value), runner.newCache(0, 2), 0)
    expect(maxAbsDiff(bDone?.out?.hidden as Float32Array, await alone(3, 0.3))).toBeLessThan(1e-4)
    expect(maxAbsDiff(cDone?.out?.hidden as Float32Array, await alone(2, 0.4))).toBeLessThan(1e-4)
    expect([a.cache.length, b.cache.length, c.cache.length]).toEqual([8, 3, 2])
  })

  it('a run of a batch cancelled while the batch computes sends nothing, and its cache is rolled back', async () => {
    const m = new SessionManager({ modelId: 'stories260k', runner, maxSessions: 4, cacheTokens: 256 })
    const [a, b, c] = [m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64)]
    void outcome(m, a, 0, new Float32Array(64 * C).fill(0.2)) // keeps the queue busy
    const bRun = outcome(m, b, 1, new Float32Array(4 * C).fill(0.3))
    let cReported = false
    m.enqueue(c, 2, 0, new Float32Array(4 * C).fill(0.4), undefined, () => { cReported = true })
    // once b and c run (together), cancel c
    await new Promise<void>(resolve => {
      const poll = (): void => { if (m.queuedRuns === 0) resolve(); else setImmediate(poll) }
      poll()
    })
    m.cancel(c, [2])
    expect((await bRun)?.out?.runId).toBe(1)
    await m.whenIdle()
    expect(cReported).toBe(false)
    expect(m.counters.abortedMidRun).toBe(1)
    expect(c.cache.length).toBe(0)
    expect(b.cache.length).toBe(4)
  })

  it('with maxBatch 1 every run goes alone', async () => {
    const m = new SessionManager({ modelId: 'stories260k', runner, maxSessions: 4, cacheTokens: 256, maxBatch: 1 })
    const [a, b, c] = [m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64), m.open('stories260k', 0, 2, 64)]
    await Promise.all([a, b, c].map(async (s, i) => await outcome(m, s, i, new Float32Array(2 * C).fill(0.1 * i))))
    expect(m.counters.batched).toBe(0)
    expect(m.counters.computed).toBe(3)
  })

  it('a GPU span runner packs at most its packLimit: five runs queued behind another go as 3 and 2, each equal to its run alone', async () => {
    const gpu = await GpuSpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 2, { device: 'cpu', packLimit: 3 }) // the GPU graph on the CPU EP
    const packs: number[] = []
    const forwardPacked = gpu.forwardPacked.bind(gpu)
    gpu.forwardPacked = async (items, signal) => { packs.push(items.length); return await forwardPacked(items, signal) }
    const m = new SessionManager({ modelId: 'stories260k', runner: gpu as unknown as SpanRunner, maxSessions: 8, cacheTokens: 512 })
    const sessions = Array.from({ length: 6 }, () => m.open('stories260k', 0, 2, 64))
    const first = outcome(m, sessions[0]!, 0, new Float32Array(32 * C).fill(0.2)) // the others queue behind it
    const rest = sessions.slice(1).map(async (s, i) => await outcome(m, s, 1, new Float32Array(C).fill(0.1 * (i + 1))))
    expect((await first)?.out?.runId).toBe(0)
    const outs = await Promise.all(rest)
    expect(packs.sort()).toEqual([2, 3])
    expect(m.counters.batched).toBe(5)
    for (const [i, done] of outs.entries()) {
      const alone = await runner.forward(new Float32Array(C).fill(0.1 * (i + 1)), runner.newCache(0, 2), 0)
      expect(maxAbsDiff(done?.out?.hidden as Float32Array, alone)).toBeLessThan(1e-5)
    }
    await gpu.release()
  })

  it('long caches still batch on the GPU span path (no copy bound): four sessions of 300 positions decode as one run', async () => {
    const gpu = await GpuSpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 2, { device: 'cpu', packLimit: 4 })
    expect(runner.maxPackedPositions).toBeLessThan(1200) // the CPU runner would split them
    const packs: number[] = []
    const forwardPacked = gpu.forwardPacked.bind(gpu)
    gpu.forwardPacked = async (items, signal) => { packs.push(items.length); return await forwardPacked(items, signal) }
    const m = new SessionManager({ modelId: 'stories260k', runner: gpu as unknown as SpanRunner, maxSessions: 8, cacheTokens: 2048 })
    const sessions = Array.from({ length: 4 }, () => m.open('stories260k', 0, 2, 400))
    for (const [i, s] of sessions.entries()) await outcome(m, s, 0, new Float32Array(300 * C).fill(0.01 * (i + 1)))
    const decode = async (s: ServerSession, value: number): Promise<RunOutcome | undefined> => await new Promise(resolve => {
      m.enqueue(s, 1, 300, new Float32Array(C).fill(value), undefined, (_err, out) => { resolve(out) })
    })
    const outs = await Promise.all(sessions.map(async (s, i) => await decode(s, 0.5 + 0.1 * i)))
    expect(outs.every(o => o !== undefined)).toBe(true)
    expect(packs).toEqual([4])
    await gpu.release()
  })
})
