/**
 * Sharing a prompt's last logits between sessions that adopt the prompt (ChatSession.adopt):
 * RowTap keeps the row a generation's prompt run returns for the prompt's last position, and
 * PrimedTarget answers another session's run of that position from it, sending nothing: the
 * other session copied the positions, so its first token needs no pass through the model.
 */
import type { PendingRun, ServerRunCounts, TargetModel, TargetStats } from './target-model.js'

/** The run id PrimedTarget answers with; targets number their runs from 0 up. */
const ANSWERED_RUN_ID = -1

/** Passes runs through to a target, keeping a copy of the logits row it returns for `position`. */
export class RowTap implements TargetModel {
  readonly serverCounters?: () => Promise<Record<string, ServerRunCounts>>
  readonly #inner: TargetModel
  readonly #position: number
  #row: Float32Array | undefined

  constructor (inner: TargetModel, position: number) {
    this.#inner = inner
    this.#position = position
    if (inner.serverCounters !== undefined) this.serverCounters = async () => await (inner.serverCounters as () => Promise<Record<string, ServerRunCounts>>)()
  }

  get vocabSize (): number { return this.#inner.vocabSize }

  /** (V) the logits after `position`, once a run over it has returned them. */
  get row (): Float32Array | undefined { return this.#row }

  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number): PendingRun {
    const run = this.#inner.submit(ids, position, parents, logitsFrom)
    const at = this.#position - position
    if (this.#row !== undefined || at < 0 || at >= ids.length) return run
    // a copy: the rows belong to the decoder that asked for them
    return { ...run, logits: run.logits.then(rows => { if ((rows[at]?.length ?? 0) > 0) this.#row ??= (rows[at] as Float32Array).slice(); return rows }) }
  }

  cancel (runIds: readonly number[]): void { this.#inner.cancel(runIds) }
  stats (): TargetStats { return this.#inner.stats() }
  async close (): Promise<void> { await this.#inner.close() }
}

/**
 * A target whose logits after `position` are known already (another session's, over the same
 * tokens, which this sequence's caches hold as a copy): the first run, if it is that position's
 * token alone, is answered from them; everything else goes to the target underneath.
 */
export class PrimedTarget implements TargetModel {
  readonly serverCounters?: () => Promise<Record<string, ServerRunCounts>>
  readonly #inner: TargetModel
  readonly #position: number
  #row: Float32Array | undefined

  constructor (inner: TargetModel, position: number, row: Float32Array) {
    if (row.length !== inner.vocabSize) throw new RangeError(`Cannot prime a target of ${inner.vocabSize} logits with a row of ${row.length}`)
    this.#inner = inner
    this.#position = position
    this.#row = row
    if (inner.serverCounters !== undefined) this.serverCounters = async () => await (inner.serverCounters as () => Promise<Record<string, ServerRunCounts>>)()
  }

  get vocabSize (): number { return this.#inner.vocabSize }

  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number): PendingRun {
    const row = this.#row
    this.#row = undefined // only the first run may be answered
    if (row !== undefined && position === this.#position && ids.length === 1 && parents === undefined) {
      return { runId: ANSWERED_RUN_ID, position, length: 1, logits: Promise.resolve([row]) }
    }
    return this.#inner.submit(ids, position, parents, logitsFrom)
  }

  cancel (runIds: readonly number[]): void {
    const sent = runIds.filter(id => id !== ANSWERED_RUN_ID)
    if (sent.length > 0) this.#inner.cancel(sent)
  }

  stats (): TargetStats { return this.#inner.stats() }
  async close (): Promise<void> { await this.#inner.close() }
}
