import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanCache } from '../../model/gpu/gpu-span-cache.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import type { SpanCache } from '../../model/kv-cache.js'
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
    gpu = await GpuSpanRunner.load(ckpt, 0, L, { device: 'cpu', packLimit: 4 })
  })
  afterAll(async () => { await ref.release(); await gpu.release() })

  /** Two GPU caches that start in one arena (a packed first run of `rowsA` and `rowsB` rows), and reference caches fed the same. */
  const sharedPair = async (rowsA: number, rowsB: number): Promise<[GpuSpanCache, GpuSpanCache, SpanCache, SpanCache]> => {
    const [a, b] = [gpu.newCache() as GpuSpanCache, gpu.newCache() as GpuSpanCache]
    const [ra, rb] = [ref.newCache(), ref.newCache()]
    await gpu.forwardPacked([{ hidden: hiddenRows(rowsA, C, 1), cache: a, position: 0 }, { hidden: hiddenRows(rowsB, C, 2), cache: b, position: 0 }])
    await ref.forward(hiddenRows(rowsA, C, 1), ra, 0)
    await ref.forward(hiddenRows(rowsB, C, 2), rb, 0)
    return [a, b, ra, rb]
  }

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

  it('packs up to packLimit sessions\' runs into one pass: each equals its own run (1e-5), with rollbacks and a copied prefix', async () => {
    expect(gpu.packLimit).toBe(4)
    const packed = [gpu.newCache(), gpu.newCache(), gpu.newCache()]
    const alone = [ref.newCache(), ref.newCache(), ref.newCache()]
    for (const [i, n] of [4, 9, 1].entries()) {
      await gpu.forward(hiddenRows(n, C, 10 + i), packed[i]!, 0)
      await ref.forward(hiddenRows(n, C, 10 + i), alone[i]!, 0)
    }
    // a fourth session copies session 1's first 6 positions (shared device tensors) and joins the batches
    const copy = gpu.newCache()
    copy.copyPrefix(packed[1]!, 6)
    const copyRef = ref.newCache()
    copyRef.copyPrefix(alone[1]!, 6)
    packed.push(copy)
    alone.push(copyRef)
    // steps of 4, 2 and 3 sessions; session 1 sends 3 rows once, session 2 rolls back at step 2
    const members = [[0, 1, 2, 3], [0, 1], [1, 2, 3], [3, 0, 2]]
    for (const [step, who] of members.entries()) {
      const rows = who.map(i => (i === 1 && step === 2 ? 3 : 1))
      const positions = who.map(i => (i === 2 && step === 2 ? packed[i]!.length - 1 : packed[i]!.length))
      const hidden = rows.map((r, k) => hiddenRows(r, C, 100 * step + k))
      const outs = await gpu.forwardPacked(who.map((i, k) => ({ hidden: hidden[k]!, cache: packed[i]!, position: positions[k]! })))
      for (const [k, i] of who.entries()) {
        const want = await ref.forward(hidden[k]!, alone[i]!, positions[k]!)
        expect(maxAbsDiff(outs[k]!, want), `step ${step}, session ${i}`).toBeLessThan(1e-5)
        expect(packed[i]!.length).toBe(alone[i]!.length)
      }
    }
    // the caches go on alone as they would have: one more lone run each
    for (const [i, cache] of packed.entries()) {
      const x = hiddenRows(2, C, 900 + i)
      expect(maxAbsDiff(await gpu.forward(x, cache, cache.length), await ref.forward(x, alone[i]!, alone[i]!.length))).toBeLessThan(1e-5)
    }
  })

  it('refuses more runs than its packLimit, one cache twice and a CPU cache, leaving every cache as it was', async () => {
    const caches = Array.from({ length: 5 }, () => gpu.newCache())
    for (const cache of caches) await gpu.forward(hiddenRows(2, C, 7), cache, 0)
    const one = (cache: SpanCache, position = 2): { hidden: Float32Array, cache: SpanCache, position: number } => ({ hidden: hiddenRows(1, C, 8), cache, position })
    await expect(gpu.forwardPacked(caches.map(c => one(c, 1)))).rejects.toThrow(/at most 4/)
    await expect(gpu.forwardPacked([one(caches[0]!, 1), one(caches[0]!)])).rejects.toThrow(/one cache/)
    await expect(gpu.forwardPacked([one(caches[1]!, 1), one(ref.newCache(), 0)])).rejects.toMatchObject({ name: 'ShapeError' })
    expect(caches.map(c => c.length)).toEqual([2, 2, 2, 2, 2])
  })

  it('sessions that keep meeting run straight from their shared arena, whose rolled-back columns stay bounded', async () => {
    const [a, b, ra, rb] = await sharedPair(3, 2)
    const arena = a.arena
    expect(b.arena).toBe(arena)
    const arenas = new Set([arena])
    // a decodes a row a step; b, first in the batch, sends 4 rows and keeps 1: 3 dead columns a step before a's row
    for (let step = 0; step < 100; step++) {
      const xa = hiddenRows(1, C, 100 + step)
      const xb = hiddenRows(4, C, 200 + step)
      const [pa, pb] = [a.length, b.length]
      const [ob, oa] = await gpu.forwardPacked([{ hidden: xb, cache: b, position: pb }, { hidden: xa, cache: a, position: pa }])
      expect(maxAbsDiff(oa!, await ref.forward(xa, ra, pa)), `step ${step}`).toBeLessThan(1e-5)
      expect(maxAbsDiff(ob!, await ref.forward(xb, rb, pb)), `step ${step}`).toBeLessThan(1e-5)
      b.truncate(pb + 1)
      rb.truncate(pb + 1)
      expect(a.arena).toBe(b.arena)
      arenas.add(a.arena)
      expect(a.arena!.width).toBeLessThanOrEqual(2 * (a.length + b.length) + 64 + 5)
    }
    // in place but for a compaction into fresh tensors now and then (500 rows sent, 200 kept)
    expect(arenas.size).toBeGreaterThan(1)
    expect(arenas.size).toBeLessThan(5)
    expect([a.length, b.length]).toEqual([103, 102])
  })

  it('a session closed while its batch runs leaves its partner\'s run and arena whole', async () => {
    const [a, b, ra] = await sharedPair(4, 4)
    const running = gpu.forwardPacked([{ hidden: hiddenRows(1, C, 5), cache: a, position: 4 }, { hidden: hiddenRows(1, C, 6), cache: b, position: 4 }])
    b.dispose() // closed mid-run: it must not free what a's run reads, nor come back to life
    const [oa] = await running
    expect(maxAbsDiff(oa!, await ref.forward(hiddenRows(1, C, 5), ra, 4))).toBeLessThan(1e-5)
    expect(b.length).toBe(0)
    expect(b.arena).toBeUndefined()
    const x = hiddenRows(2, C, 7)
    expect(maxAbsDiff(await gpu.forward(x, a, 5), await ref.forward(x, ra, 5))).toBeLessThan(1e-5)
  })

  it('a prompt-sized run of a cache that shares its arena with bigger ones moves to an arena of its own; a decode step stays', async () => {
    const [big, small, rBig, rSmall] = await sharedPair(120, 2)
    const shared = small.arena
    const step = hiddenRows(3, C, 3)
    expect(maxAbsDiff(await gpu.forward(step, small, 2), await ref.forward(step, rSmall, 2))).toBeLessThan(1e-5)
    expect(small.arena).toBe(shared)
    const prompt = hiddenRows(20, C, 4)
    expect(maxAbsDiff(await gpu.forward(prompt, small, 5), await ref.forward(prompt, rSmall, 5))).toBeLessThan(1e-5)
    expect(small.arena).not.toBe(shared)
    expect(small.arena!.width).toBe(25)
    expect(big.arena).toBe(shared)
    const next = hiddenRows(1, C, 5)
    expect(maxAbsDiff(await gpu.forward(next, big, 120), await ref.forward(next, rBig, 120))).toBeLessThan(1e-5)
  })

  for (const quantization of ['int8', 'int4'] as const) {
    it(`${quantization} blocks: the GPU graph's MatMulNBits layers are as close to float32 as the CPU runner's, and a batch changes no output`, async () => {
      const [cpuQ, gpuQ] = [await SpanRunner.load(ckpt, 0, L, { quantization }), await GpuSpanRunner.load(ckpt, 0, L, { device: 'cpu', quantization, packLimit: 2 })]
      const prompt = hiddenRows(6, C, 11)
      const floats = await ref.forward(prompt, ref.newCache(), 0)
      const range = Math.max(...floats.map(Math.abs))
      const [a, b] = [gpuQ.newCache(), gpuQ.newCache()]
      const gpuOut = await gpuQ.forward(prompt, a, 0)
      const cpuOut = await cpuQ.forward(prompt, cpuQ.newCache(), 0)
      // the GPU graph keeps activations in float32 (accuracy level 0), the CPU's quantizes them to int8 (level 4)
      expect(maxAbsDiff(gpuOut, floats)).toBeGreaterThan(1e-4) // the weights really are quantized
      expect(maxAbsDiff(gpuOut, floats)).toBeLessThanOrEqual(1.1 * maxAbsDiff(cpuOut, floats))
      expect(maxAbsDiff(gpuOut, cpuOut) / range).toBeLessThan(0.02)
      // packed runs equal lone runs of the same caches
      const [lone1, lone2] = [gpuQ.newCache(), gpuQ.newCache()]
      await gpuQ.forward(prompt, lone1, 0)
      await gpuQ.forward(hiddenRows(3, C, 12), b, 0)
      await gpuQ.forward(hiddenRows(3, C, 12), lone2, 0)
      const [xa, xb] = [hiddenRows(1, C, 13), hiddenRows(2, C, 14)]
      const [oa, ob] = await gpuQ.forwardPacked([{ hidden: xa, cache: a, position: 6 }, { hidden: xb, cache: b, position: 3 }])
      expect(maxAbsDiff(oa!, await gpuQ.forward(xa, lone1, 6))).toBeLessThan(1e-5)
      expect(maxAbsDiff(ob!, await gpuQ.forward(xb, lone2, 3))).toBeLessThan(1e-5)
      await cpuQ.release()
      await gpuQ.release()
    })
  }
})
