/** Quantized blocks: the packing MatMulNBits reads, and what 8 and 4 bits do to a trained model's outputs. */
import * as ort from 'onnxruntime-node'
import { describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { ClientParts } from '../../model/client-parts.js'
import { LocalModel } from '../../model/local-model.js'
import { GraphBuilder } from '../../model/onnx/graph-builder.js'
import { emitBatchTime, emitWeightLinear } from '../../model/onnx/linear.js'
import { dequantizeWeight, quantizeWeight, type Quantization } from '../../model/quantize.js'
import { SpanRunner } from '../../model/span-runner.js'
import { BUNDLED_MODEL, maxAbsDiff, readReference } from '../helpers/fixtures.js'
import { logitsDivergence } from '../helpers/logits-divergence.js'

/** Seeded values in [-scale/2, scale/2). */
function seeded (n: number, seed: number, scale = 0.2): Float32Array {
  let s = seed
  return Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return (s / 2 ** 32 - 0.5) * scale })
}

/** y = x @ W^T through one Linear layer in `quantization` (B=1). */
async function linearOutput (w: Float32Array, x: Float32Array, k: number, n: number, quantization: Quantization): Promise<Float32Array> {
  const g = new GraphBuilder({ opset: 23 })
  const input = g.input('x', 'float32', ['B', 'T', k])
  g.rename(emitWeightLinear(g, input, emitBatchTime(g, input), 'w', w, k, n, quantization), 'y')
  g.output('y', 'float32', ['B', 'T', n])
  const session = await ort.InferenceSession.create(g.build('linear'))
  try {
    return (await session.run({ x: new ort.Tensor('float32', x, [1, x.length / k, k]) })).y?.data as Float32Array
  } finally {
    await session.release()
  }
}

describe('block-wise quantization', () => {
  for (const bits of [8, 4] as const) {
    it(`${bits} bits: each value within half a step of its block, zeros and padding exact`, () => {
      const [n, k] = [6, 72] // 72 = 2 blocks of 32 and a padded one of 8
      const w = seeded(n * k, bits)
      w[5] = 0
      const q = quantizeWeight(w, n, k, bits)
      expect(q.codes.length).toBe(n * 3 * (32 * bits) / 8)
      expect(q.zeroPoints.length).toBe(n * Math.ceil((3 * bits) / 8))
      const back = dequantizeWeight(q)
      expect(back[5]).toBe(0)
      for (let i = 0; i < w.length; i++) {
        const step = q.scales[Math.floor(i / k) * 3 + Math.floor((i % k) / 32)] as number
        expect(Math.abs((back[i] as number) - (w[i] as number))).toBeLessThanOrEqual(step / 2 + 1e-7)
      }
    })

    it(`${bits} bits: MatMulNBits reads the packing as written (its outputs are those of the dequantized weights)`, async () => {
      const [n, k] = [40, 96]
      const w = seeded(n * k, 11 + bits)
      const x = seeded(3 * k, 5, 2)
      const quantized = await linearOutput(w, x, k, n, bits === 8 ? 'int8' : 'int4')
      const dequantized = await linearOutput(dequantizeWeight(quantizeWeight(w, n, k, bits)), x, k, n, 'none')
      // what is left is onnxruntime quantizing x to int8 per block (accuracy_level 4): under 1% of
      // the outputs' range, where a wrong nibble or zero point is off by as much as the outputs
      const range = Math.max(...dequantized.map(Math.abs))
      expect(maxAbsDiff(quantized, dequantized) / range).toBeLessThan(0.01)
    })
  }

  it('is refused on the cuda device (the GPU span path of webgpu has it), not ignored', async () => {
    await expect(SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 1, { device: 'cuda', quantization: 'int4' })).rejects.toThrow(/int4 on cuda: quantized blocks run on the CPU and on webgpu only/)
  })

  it('refuses a weight of the wrong size and blocks that are no power of two', () => {
    expect(() => quantizeWeight(new Float32Array(10), 3, 4, 4)).toThrow(/as a \(3, 4\) weight/)
    expect(() => quantizeWeight(new Float32Array(12), 3, 4, 4, 24)).toThrow(/power of two/)
  })
})

describe('stories260k with quantized blocks, on its reference texts', () => {
  const ref = readReference('stories260k')
  const texts: number[][] = ref.prompts.map((p: { prompt_ids: number[], greedy_new_ids: number[] }) => [...p.prompt_ids, ...p.greedy_new_ids])

  it('int8 keeps every argmax and almost all of the distribution; int4 most of both', async () => {
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    const float = await LocalModel.load(ckpt)
    const results: Record<string, { kl: number, agree: number }> = {}
    for (const quantization of ['int8', 'int4'] as const) {
      const model = await LocalModel.load(ckpt, { quantization })
      const pairs = await Promise.all(texts.map(async ids => logitsDivergence(await float.newSession().forward(ids), await model.newSession().forward(ids))))
      results[quantization] = { kl: pairs.reduce((s, c) => s + c.kl, 0) / pairs.length, agree: pairs.reduce((s, c) => s + c.agree, 0) / pairs.length }
      await model.release()
    }
    await float.release()
    // measured (2026-11-27): int8 KL 2e-4 and 158 of 159 argmaxes; int4 KL 0.03 and 94% of them
    expect(results['int8']?.agree).toBeGreaterThan(0.98)
    expect(results['int8']?.kl).toBeLessThan(2e-3)
    expect(results['int4']?.agree).toBeGreaterThan(0.85)
    expect(results['int4']?.kl).toBeLessThan(0.1)
  }, 60_000)
})

describe('client parts in 8 bits', () => {
  it('embed rows within half a step of float32\'s, and logits on the reference texts nearly the same', async () => {
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    const float = await LocalModel.load(ckpt)
    const parts = await ClientParts.load(ckpt, { quantization: 'int8' })
    const ids = [1, 403, 407, 261, 378, 511, 0]
    const [exact, approx] = [float.parts.embed(ids), parts.embed(ids)]
    const table = ckpt.readClientWeights().embedding
    const step = Math.max(...Array.from(table, Math.abs)) * 2 / 255 // no block's step is larger
    expect(maxAbsDiff(exact, approx)).toBeLessThanOrEqual(step / 2 + 1e-7)
    let kl = 0
    let agree = 0
    let positions = 0
    for (const p of readReference('stories260k').prompts as Array<{ prompt_ids: number[], greedy_new_ids: number[] }>) {
      const hidden = await float.newSession().hidden([...p.prompt_ids, ...p.greedy_new_ids])
      const c = logitsDivergence(await float.parts.logits(hidden), await parts.logits(hidden))
      const n = p.prompt_ids.length + p.greedy_new_ids.length
      kl += c.kl * n
      agree += c.agree * n
      positions += n
    }
    // measured (2026-11-27): KL 1.9e-4 per position, every argmax the same
    expect(agree / positions).toBeGreaterThan(0.99)
    expect(kl / positions).toBeLessThan(1e-3)
    await parts.release()
    await float.release()
    expect(() => parts.embed([512])).toThrow(/vocabulary size is 512/)
  })
})
