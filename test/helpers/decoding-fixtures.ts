import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { type Drafter, type DraftModel, DraftModelDrafter, loadDraftModel, NgramDrafter } from '../../client/decoding/index.js'
import type { PendingRun, TargetModel, TargetStats } from '../../client/target-model.js'
import { BUNDLED_MODEL, fixtureDir } from './fixtures.js'

/** stories260k's reference: 3 prompts with 48 greedy tokens each (no EOS stop). */
export interface StoriesReference {
  prompts: Array<{ prompt: string, prompt_ids: number[], greedy_new_ids: number[] }>
}

export const STORIES_REF: StoriesReference = JSON.parse(readFileSync(join(BUNDLED_MODEL, 'reference.json'), 'utf8'))

/** The target (stories260k) and the draft (stories260k-draft, loaded as the SDK loads drafts), once per test file. */
export async function loadStories (): Promise<{ model: LocalModel, draft: DraftModel }> {
  const [model, draft] = await Promise.all([
    LocalModel.load(Checkpoint.open(BUNDLED_MODEL)),
    loadDraftModel(Checkpoint.open(fixtureDir('stories260k-draft')))
  ])
  return { model, draft }
}

export type DrafterKind = 'model' | 'ngram'

export function makeDrafter (kind: DrafterKind, draft: DraftModel): Drafter {
  return kind === 'model' ? new DraftModelDrafter(draft) : new NgramDrafter()
}

/**
 * A TargetModel that passes everything to another and remembers what happened to each run,
 * so a test can tell whether a decode left a run in flight (neither finished nor cancelled).
 */
export class TrackingTarget implements TargetModel {
  readonly #inner: TargetModel
  readonly #onSubmit: ((ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number) => void) | undefined
  readonly submitted: number[] = []
  readonly finished = new Set<number>()
  readonly cancelled = new Set<number>()

  /** `onSubmit` sees every run as it is submitted. */
  constructor (inner: TargetModel, onSubmit?: (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number) => void) {
    this.#inner = inner
    this.#onSubmit = onSubmit
  }

  get vocabSize (): number { return this.#inner.vocabSize }

  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number): PendingRun {
    this.#onSubmit?.(ids, position, parents, logitsFrom)
    const run = this.#inner.submit(ids, position, parents, logitsFrom)
    this.submitted.push(run.runId)
    run.logits.then(() => { this.finished.add(run.runId) }, () => {})
    return run
  }

  cancel (runIds: readonly number[]): void {
    for (const id of runIds) this.cancelled.add(id)
    this.#inner.cancel(runIds)
  }

  /** Runs submitted that have neither finished nor been cancelled. */
  inFlight (): number[] {
    return this.submitted.filter(id => !this.finished.has(id) && !this.cancelled.has(id))
  }

  stats (): TargetStats { return this.#inner.stats() }
  async close (): Promise<void> { await this.#inner.close() }
}
