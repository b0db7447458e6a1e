import { Checkpoint } from '../model/checkpoint.js'
import { LocalModel, type LocalModelInit } from '../model/local-model.js'
import { loadProgress } from './progress.js'

/** Opens a checkpoint folder and loads the whole model locally, drawing a progress bar for large ones. */
export async function loadLocalModel (dir: string, init: LocalModelInit = {}): Promise<{ ckpt: Checkpoint, model: LocalModel }> {
  const ckpt = Checkpoint.open(dir)
  const total = ckpt.blockByteSize(0) * ckpt.config.numLayers
  const bar = loadProgress(`loading ${dir}`, total)
  try {
    const model = await LocalModel.load(ckpt, { ...init, onProgress: bar.update })
    return { ckpt, model }
  } finally {
    bar.stop()
  }
}
