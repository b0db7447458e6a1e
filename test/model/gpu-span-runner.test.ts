import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { SpanRunner } from '../../model/span-runner.js'
import { fixtureDir, maxAbsDiff } from '../helpers/fixtures.js'

/** Deterministic (1,T,C) activations. */
function hiddenRows (T: number, C: number, salt: number): Float32Array {
  return Float32Array.from({ length: T * C }, (_, i) => Math.sin(i * 0.37 + salt))
}

// The GPU-resident graph runs on any EP; on the CPU EP its cache tensors stay on the host,
// which checks the graph and the cache bookkeeping without a GPU.
describe('GpuSpanRunner (graph on the CPU EP)', () => {
  const ckpt = Checkpoint.open(fixtureDir('tiny-llama-gqa'))
  const C = ckpt.config.hiddenSize
  const L = ckpt.config.numLayers
  let ref: SpanRunner
  let gpu: GpuSpanRunner
  beforeAll(async () => {
    ref = await SpanRunner.load(ckpt, 0, L)
    gpu = await GpuSpanRunner.load(ckpt, 0, L, { device: 'cpu' })
  })
  afterAll(async () => { await ref.release(); await gpu.release() })

  it('matches SpanRunner (1e-5) over chunked prefill, decode and rollback', async () => {
    const [rc, gc] = [ref.newCache(), gpu.newCache()]
    const steps: Array<[T: number, position: number]> = [[5, 0], [3, 5], [1, 8], [1, 9], [2, 6], [1, 8], [4, 0]]
    for (const [i, [T, position]] of steps.entries()) {
      const x = hiddenRows(T, C, i)
      const want = await ref.forward(x, rc, position)
      const got = await gpu.forward(x, gc, position)
      expect(maxAbsDiff(got, want), `step ${i}: T=${T} at ${position}`).toBeLessThan(1e-5)
      expect(gc.length).toBe(rc.length)
    }
  })

  it('serves only its whole span and refuses CPU caches and gaps', async () => {
    expect(gpu.canServe(0, L)).toBe(true)
    expect(gpu.canServe(0, L - 1)).toBe(false)
    expect(() => gpu.newCache(1, L)).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    await expect(gpu.forward(hiddenRows(1, C, 0), ref.newCache(), 0)).rejects.toMatchObject({ name: 'ShapeError' })
    await expect(gpu.forward(hiddenRows(1, C, 0), gpu.newCache(), 3)).rejects.toMatchObject({ name: 'ShapeError' })
  })

  // a session adopting another's prefix (the wire's `adopt`): CPU caches copy rows, GPU caches share device tensors
  for (const kind of ['cpu', 'gpu'] as const) {
    it(`${kind} cache: a copied prefix goes on as the source would, and each then rolls back and grows on its own`, async () => {
      const runner = kind === 'cpu' ? ref : gpu
      const [source, copy, want] = [runner.newCache(), runner.newCache(), ref.newCache()]
      const prefix = hiddenRows(7, C, 1)
      await runner.forward(prefix, source, 0)
      await ref.forward(prefix.subarray(0, 5 * C), want, 0)
      copy.copyPrefix(source, 5)
      expect(copy.length).toBe(5)
      // the source moves on (a rollback and new rows): the copy must not see it
      await runner.forward(hiddenRows(3, C, 2), source, 4)
      if (kind === 'gpu') source.dispose() // shared device tensors outlive the source
      const x = hiddenRows(2, C, 3)
      expect(maxAbsDiff(await runner.forward(x, copy, 5), await ref.forward(x, want, 5))).toBeLessThan(1e-5)
      const y = hiddenRows(1, C, 4)
      expect(maxAbsDiff(await runner.forward(y, copy, 3), await ref.forward(y, want, 3))).toBeLessThan(1e-5)
    })
  }

  it('a prefix copy refuses more positions than the source holds, and caches of other blocks or kinds', async () => {
    const source = ref.newCache()
    await ref.forward(hiddenRows(3, C, 5), source, 0)
    expect(() => { ref.newCache().copyPrefix(source, 4) }).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => { ref.newCache(0, 1).copyPrefix(source, 2) }).toThrow(expect.objectContaining({ name: 'ShapeError' }))
    expect(() => { gpu.newCache().copyPrefix(source, 2) }).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })
})
