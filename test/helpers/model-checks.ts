import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { GpuSpanRunner } from '../../model/gpu/gpu-span-runner.js'
import { LocalModel } from '../../model/local-model.js'
import { SpanRunner } from '../../model/span-runner.js'
import { WholeModel } from '../../model/whole-model.js'
import { writeRandomLlama, type RandomLlamaOptions } from '../../scripts/make-random-llama.js'
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

/** A random checkpoint with a feature, loaded as two spans, and its twin without it (the same weights). */
export interface FeatureTwin {
  readonly ckpt: Checkpoint
  readonly model: LocalModel
  /** The twin's folder: the same weights, no feature. */
  readonly withoutDir: string
  /** Releases the model and removes both folders. */
  close: () => Promise<void>
}

/**
 * Writes the twin pair: `shape` for both, `feature` (writer options) and `config` (config.json
 * fields) for the first only.
 */
export async function featureTwin (shape: Omit<RandomLlamaOptions, 'out'>, feature: Partial<RandomLlamaOptions>, config: Record<string, unknown> = {}): Promise<FeatureTwin> {
  const [dir, withoutDir] = [mkdtempSync(join(tmpdir(), 'petal-with-')), mkdtempSync(join(tmpdir(), 'petal-without-'))]
  writeRandomLlama({ ...shape, ...feature, out: dir })
  writeRandomLlama({ ...shape, out: withoutDir })
  const file = join(dir, 'config.json')
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...config }))
  const ckpt = Checkpoint.open(dir)
  const model = await LocalModel.load(ckpt, { split: [1] })
  return {
    ckpt,
    model,
    withoutDir,
    close: async () => {
      await model.release()
      for (const d of [dir, withoutDir]) rmSync(d, { recursive: true, force: true })
    }
  }
}
