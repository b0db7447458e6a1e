/**
 * Simulated device time (benchmarks: servers that stand in for a bigger model): each run
 * holds the compute queue msPerRun + msPerRow * rows longer, and a cancel cuts it short.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { SessionManager, type RunOutcome } from '../../node/session-manager.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

const C = 64 // hidden size of stories260k

describe('SessionManager with simulated compute', () => {
  let runner: SpanRunner
  beforeAll(async () => { runner = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 2) })
  afterAll(async () => { await runner?.release() })

  const manager = (msPerRun: number, msPerRow: number): SessionManager =>
    new SessionManager({ modelId: 'stories260k', runner, maxSessions: 2, cacheTokens: 64, simulatedCompute: { msPerRun, msPerRow } })

  it('holds the queue msPerRun + msPerRow * rows after computing, and reports it as compute', async () => {
    const m = manager(30, 10)
    const session = m.open('stories260k', 0, 2, 32)
    const results: RunOutcome[] = []
    const t0 = performance.now()
    await new Promise<void>(resolve => {
      m.enqueue(session, 0, 0, new Float32Array(4 * C).fill(0.1), undefined, (_err, out) => { if (out !== undefined) results.push(out) })
      m.enqueue(session, 1, 4, new Float32Array(1 * C).fill(0.1), undefined, (_err, out) => { if (out !== undefined) results.push(out); resolve() })
    })
    const elapsed = performance.now() - t0
    expect(results.map(r => r.runId)).toEqual([0, 1])
    expect(results[0]?.computeMs).toBeGreaterThanOrEqual(30 + 4 * 10 - 1)
    expect(results[1]?.computeMs).toBeGreaterThanOrEqual(30 + 1 * 10 - 1)
    // the second run waited for the first one's simulated time: they do not overlap
    expect(results[1]?.queuedMs).toBeGreaterThanOrEqual(30 + 4 * 10 - 5)
    expect(elapsed).toBeGreaterThanOrEqual(70 + 40 - 2)
    expect(m.counters.computed).toBe(2)
  })

  it('a cancel during the simulated time stops the run: no result, counted as aborted mid-run', async () => {
    const m = manager(5000, 0)
    const session = m.open('stories260k', 0, 2, 32)
    let reported = false
    m.enqueue(session, 7, 0, new Float32Array(2 * C).fill(0.1), undefined, () => { reported = true })
    await new Promise(resolve => setTimeout(resolve, 50)) // computing done, now idling
    const t0 = performance.now()
    m.cancel(session, [7])
    await m.whenIdle()
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(reported).toBe(false)
    expect(m.counters).toMatchObject({ computed: 0, abortedMidRun: 1 })
  })
})
