import type { LocalModel, LocalSequence } from '../model/local-model.js'
import { CancelledError } from '../protocol/errors.js'
import type { PendingRun, TargetModel, TargetStats } from './target-model.js'

interface QueuedRun {
  readonly runId: number
  readonly ids: readonly number[]
  readonly position: number
  readonly parents: readonly number[] | undefined
  /** Rows before it get no logits (TargetModel.submit). */
  readonly logitsFrom: number
  resolve: (logits: Float32Array[]) => void
  reject: (err: Error) => void
}

export interface LocalTargetInit {
  /**
   * Simulated network latency: ms added before a run starts and again before its logits
   * are delivered (a one-hop pipeline's two one-way trips). Default 0.
   */
  oneWayLatencyMs?: number
}

/**
 * The whole model on this machine as a TargetModel: runs execute one at a time in
 * submission order; cancelled runs that have not started are never computed.
 */
export class LocalTarget implements TargetModel {
  readonly vocabSize: number
  readonly #sequence: LocalSequence
  readonly #queue: QueuedRun[] = []
  readonly #cancelled = new Set<number>()
  readonly #latency: number
  #nextRunId = 0
  #busy = false
  readonly #stats = { runsSent: 0, runsCancelled: 0, failovers: 0, route: 'local', runsComputed: 0, prefixesAdopted: 0 }

  constructor (model: LocalModel, init: LocalTargetInit = {}) {
    this.vocabSize = model.parts.config.vocabSize
    this.#sequence = model.newSession()
    this.#latency = init.oneWayLatencyMs ?? 0
  }

  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom = 0): PendingRun {
    const runId = this.#nextRunId++
    this.#stats.runsSent++
    const logits = new Promise<Float32Array[]>((resolve, reject) => {
      const run = { runId, ids, position, parents, logitsFrom, resolve, reject }
      if (this.#latency > 0) setTimeout(() => { this.#enqueue(run) }, this.#latency)
      else this.#enqueue(run)
    })
    return { runId, position, length: ids.length, logits }
  }

  cancel (runIds: readonly number[]): void {
    const ids = new Set(runIds)
    for (const id of runIds) this.#cancelled.add(id) // runs still in simulated flight
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const run = this.#queue[i] as QueuedRun
      if (ids.has(run.runId)) {
        this.#queue.splice(i, 1)
        this.#stats.runsCancelled++
        run.reject(new CancelledError(`Run ${run.runId} was cancelled`))
      }
    }
  }

  async adoptPrefix (source: TargetModel, length: number): Promise<boolean> {
    if (!(source instanceof LocalTarget) || source === this || this.#busy || this.#queue.length > 0) return false
    if (!Number.isInteger(length) || length < 1 || length > source.#sequence.length) return false
    try {
      this.#sequence.copyPrefix(source.#sequence, length)
    } catch {
      return false // a sequence of another model
    }
    this.#stats.prefixesAdopted++
    return true
  }

  stats (): TargetStats {
    return { ...this.#stats }
  }

  async close (): Promise<void> {
    this.cancel(this.#queue.map(r => r.runId))
  }

  #enqueue (run: QueuedRun): void {
    if (this.#cancelled.has(run.runId)) {
      this.#stats.runsCancelled++
      run.reject(new CancelledError(`Run ${run.runId} was cancelled`))
      return
    }
    this.#queue.push(run)
    void this.#pump()
  }

  async #pump (): Promise<void> {
    if (this.#busy) return
    this.#busy = true
    try {
      for (let run = this.#queue.shift(); run !== undefined; run = this.#queue.shift()) {
        try {
          const logits = await this.#sequence.forward(run.ids, run.position, run.parents, run.logitsFrom)
          this.#stats.runsComputed++
          const deliver = run.resolve
          if (this.#latency > 0) setTimeout(() => { deliver(logits) }, this.#latency)
          else deliver(logits)
        } catch (err) {
          run.reject(err as Error)
        }
      }
    } finally {
      this.#busy = false
    }
  }
}
