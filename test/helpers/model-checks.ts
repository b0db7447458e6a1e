import { expect } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { LocalModel } from '../../model/local-model.js'
import { SpanRunner } from '../../model/span-runner.js'
import { WholeModel } from '../../model/whole-model.js'
import { argmax, maxAbsDiff, maxAbsDiffRows } from './fixtures.js'
import { referenceLogits } from './reference-llama.js'

/**
 * `model` gives the independent float64 implementation's logits (1e-4, same greedy picks),
 * and the checkpoint in `withoutFeatureDir` (the same weights without the feature under
 * test) does not: proof that the check would notice the feature left out.
 */
export async function expectReferenceLogits (model: LocalModel, ckpt: Checkpoint, ids: readonly number[], withoutFeatureDir: string): Promise<void> {
  const ours = await model.newSession().forward(ids)
  const reference = referenceLogits(ckpt, ids)
  expect(maxAbsDiffRows(ours, reference)).toBeLessThan(1e-4)
  expect(ours.map(argmax)).toEqual(reference.map(argmax))
  const without = await LocalModel.load(Checkpoint.open(withoutFeatureDir))
  try {
    expect(maxAbsDiffRows(await without.newSession().forward(ids), reference)).toBeGreaterThan(1e-3)
  } finally {
    await without.release()
  }
}

/** A draft (WholeModel) and the GPU span graph (on the CPU EP) run a 2-block checkpoint as `model` does (1e-5). */
export async function expectRunnersAgree (model: LocalModel, ckpt: Checkpoint, ids: readonly number[]): Promise<void> {
  const ours = await model.newSession().forward(ids)
  const whole = await WholeModel.load(ckpt)
  const [spans, gpu] = await Promise.all([SpanRunner.load(ckpt, 0, 2), GpuSpanRunner.load(ckpt, 0, 2, { device: 'cpu' })])
  try {
    expect(maxAbsDiffRows(await whole.newSession().forward(ids), ours)).toBeLessThan(1e-5)
    const x = Float32Array.from({ length: ids.length * ckpt.config.hiddenSize }, (_, i) => Math.sin(i * 0.37))
    expect(maxAbsDiff(await gpu.forward(x, gpu.newCache(), 0), await spans.forward(x, spans.newCache(), 0))).toBeLessThan(1e-5)
  } finally {
    await Promise.all([whole.release(), spans.release(), gpu.release()])
  }
}
