import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { LocalModel } from '../../model/local-model.js'
import { SpanRunner } from '../../model/span-runner.js'
import { parentsProblem, pathTo, runLayout, visibility } from '../../model/token-tree.js'
import { fixtureDir, maxAbsDiff, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'

describe('token tree layout', () => {
  it('places rows one position after their parents and finds the trunk', () => {
    // rows: 0-1-2 trunk, 3 sibling of 1, 4 child of 3, 5 sibling of 0
    const layout = runLayout(10, 6, [-1, 0, 1, 0, 3, -1])
    expect(layout.positions).toEqual([10, 11, 12, 11, 12, 10])
    expect(layout.trunk).toBe(3)
    expect(pathTo([-1, 0, 1, 0, 3, -1], 4)).toEqual([0, 3, 4])
  })

  it('a chain of parents is an ordinary run', () => {
    const layout = runLayout(4, 3, [-1, 0, 1])
    expect(layout).toEqual(runLayout(4, 3))
    expect(layout.parents).toBeUndefined()
  })

  it('lets a row see the cache, its ancestors and itself only', () => {
    const m = visibility(runLayout(2, 4, [-1, 0, 0, 2]), 2) // S = 6
    const rows = Array.from({ length: 4 }, (_, t) => [...m.subarray(t * 6, t * 6 + 6)])
    expect(rows).toEqual([
      [1, 1, 1, 0, 0, 0],
      [1, 1, 1, 1, 0, 0],
      [1, 1, 1, 0, 1, 0], // row 2 is row 1's sibling: it must not see row 1
      [1, 1, 1, 0, 1, 1]
    ])
  })

  it('names what is wrong with a malformed tree', () => {
    expect(parentsProblem([-1, 0], 3)).toMatch(/2 entries for 3 rows/)
    expect(parentsProblem([-1, 1], 2)).toMatch(/parents\[1\] = 1/)
    expect(parentsProblem([-2], 1)).toMatch(/parents\[0\] = -2/)
    expect(parentsProblem([-1, 0.5], 2)).toMatch(/parents\[1\]/)
    expect(parentsProblem([-1, 0, 0], 3)).toBeUndefined()
    expect(() => runLayout(0, 2, [0, 0])).toThrow(expect.objectContaining({ name: 'ShapeError' }))
  })
})

describe('tree runs through the model (tiny-llama-gqa)', () => {
  const ckpt = Checkpoint.open(fixtureDir('tiny-llama-gqa'))
  const ids: number[] = readReference('tiny-llama-gqa').input_ids
  let model: LocalModel
  beforeAll(async () => { model = await LocalModel.load(ckpt, { split: [2, 4] }) })
  afterAll(async () => { await model.release() })

  // After 5 cached tokens: trunk ids[5..8] at 5..8, plus branches with other tokens.
  const prefix = ids.slice(0, 5)
  const tokens = [ids[5], ids[6], ids[7], ids[8], 17, 23, 29, 31] as number[]
  const parents = [-1, 0, 1, 2, 0, 4, 1, -1] // 4: alt at 6, 5: its child at 7, 6: alt at 7, 7: alt at 5

  it('every row gets the logits of a chain run over its own path (1e-5)', async () => {
    const seq = model.newSession()
    await seq.forward(prefix, 0)
    const tree = await seq.forward(tokens, 5, parents)
    expect(tree).toHaveLength(tokens.length)
    for (let row = 0; row < tokens.length; row++) {
      const path = pathTo(parents, row).map(r => tokens[r] as number)
      const chain = await model.newSession().forward([...prefix, ...path], 0)
      expect(maxAbsDiff(tree[row] as Float32Array, chain.at(-1) as Float32Array), `row ${row}`).toBeLessThan(1e-5)
    }
  })

  it('caches only the trunk: the next run sees the trunk, not the branches', async () => {
    const seq = model.newSession()
    await seq.forward(prefix, 0)
    await seq.forward(tokens, 5, parents)
    expect(seq.length).toBe(9)
    const after = await seq.forward(ids.slice(9), 9)
    const whole = await model.newSession().forward(ids, 0)
    expect(maxAbsDiffRows(after, whole.slice(9))).toBeLessThan(1e-5)
  })

  it('the GPU-resident runner (on the CPU EP) computes trees like SpanRunner', async () => {
    const L = ckpt.config.numLayers
    const C = ckpt.config.hiddenSize
    const [ref, gpu] = [await SpanRunner.load(ckpt, 0, L), await GpuSpanRunner.load(ckpt, 0, L, { device: 'cpu' })]
    const [rc, gc] = [ref.newCache(), gpu.newCache()]
    const x = model.parts.embed(ids)
    await ref.forward(x.subarray(0, 5 * C), rc, 0)
    await gpu.forward(x.subarray(0, 5 * C), gc, 0)
    const t = model.parts.embed(tokens)
    expect(maxAbsDiff(await gpu.forward(t, gc, 5, { parents }), await ref.forward(t, rc, 5, { parents }))).toBeLessThan(1e-5)
    expect(gc.length).toBe(9)
    const rest = x.subarray(9 * C)
    expect(maxAbsDiff(await gpu.forward(rest, gc, 9), await ref.forward(rest, rc, 9))).toBeLessThan(1e-5)
    await ref.release()
    await gpu.release()
  })
})
