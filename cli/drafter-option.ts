import { Checkpoint } from '../model/checkpoint.js'
import { DraftModelDrafter, loadDraftModel, NgramDrafter, type Drafter } from '../client/decoding/index.js'

/** A drafter and how to free it. */
export interface OwnedDrafter {
  drafter: Drafter
  release: () => Promise<void>
}

/** `--draft ngram` (prompt lookup) or `--draft DIR` (a draft checkpoint with the same tokenizer, run locally). */
export async function createDrafter (spec: string): Promise<OwnedDrafter> {
  if (spec === 'ngram') return { drafter: new NgramDrafter(), release: async () => {} }
  const model = await loadDraftModel(Checkpoint.open(spec))
  const drafter = new DraftModelDrafter(model)
  return { drafter, release: async () => { await drafter.close(); await model.release() } }
}
