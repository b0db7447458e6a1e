import { describe, expect, it } from 'vitest'
import { StuckComputeWatch } from '../../node/stuck-compute-watch.js'

/** Holds the event loop for `ms`, as a synchronous onnxruntime run on the CPU does. */
function stall (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* busy */ }
}
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** A watch over a batch id the test sets; resolves `stuckAt` (ms since start) when it fires. */
function watch (stuckAfterMs: number): { set: (batch: number | undefined) => void, stuckAt: () => number | undefined, stop: () => void } {
  let batch: number | undefined
  let stuckAt: number | undefined
  const began = performance.now()
  const w = new StuckComputeWatch({ stuckAfterMs, runningBatch: () => batch, onStuck: () => { stuckAt = performance.now() - began } })
  w.start()
  return { set: b => { batch = b }, stuckAt: () => stuckAt, stop: () => { w.stop() } }
}

describe('StuckComputeWatch', () => {
  it('fires when one batch computes past its time while the event loop is free', async () => {
    const w = watch(300)
    w.set(1)
    await sleep(1000)
    w.stop()
    expect(w.stuckAt()).toBeGreaterThanOrEqual(300)
    expect(w.stuckAt()).toBeLessThan(800)
  })

  it('never fires while batches keep finishing, nor while idle', async () => {
    const w = watch(300)
    for (let b = 1; b <= 10; b++) {
      w.set(b)
      await sleep(100)
    }
    w.set(undefined)
    await sleep(600)
    w.stop()
    expect(w.stuckAt()).toBeUndefined()
  })

  it('does not count a batch that holds the event loop: it is computing, not stuck', async () => {
    const w = watch(300)
    w.set(1)
    await sleep(100) // the watch has seen batch 1
    stall(1200) // a CPU run four times the limit long
    await sleep(150)
    w.set(2)
    await sleep(150)
    w.set(undefined)
    await sleep(200)
    w.stop()
    expect(w.stuckAt()).toBeUndefined()
  })
})
