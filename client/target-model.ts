/**
 * The target model of one sequence, as generation and speculative decoding see it:
 * a chain of runs, each feeding tokens at consecutive positions and getting logits back.
 *
 * Position-addressed: a run that starts at position p makes every holder of the sequence's
 * KV caches forget positions >= p first, so rolling back a rejected speculation is just
 * submitting the next run from the first wrong position. Runs in flight form one chain:
 * each starts where the previous one ends, or earlier after a cancellation.
 */
export interface TargetModel {
  readonly vocabSize: number
  /**
   * Starts a run of `ids` at positions position..position+T-1; its logits arrive later.
   * With `parents` the ids form a token tree (model/token-tree.ts): one row of logits per
   * id still, but only the trunk stays in the caches. Rows before `logitsFrom` (default 0)
   * come back empty: the client skips the LM head for rows that decide nothing (a prompt's).
   */
  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom?: number): PendingRun
  /**
   * Cancels runs that have not finished, everywhere they may be queued; their `logits`
   * reject with a CancelledError (code CANCELLED). Finished runs are unaffected.
   */
  cancel (runIds: readonly number[]): void
  /**
   * Makes this sequence's caches hold the first `length` positions of `source`'s, another
   * sequence of the same model, by copying them where they are (servers both routes share
   * copy them from the source's session) instead of computing them again. The source's runs
   * over those positions must have returned, and none of this target's may be in flight.
   * Resolves false when it could not (another kind of target, a route that cuts the blocks
   * differently, a source that holds fewer positions): the caches are then in no known state,
   * and the caller sends the positions from 0 as usual. Optional: without it, callers do that.
   */
  adoptPrefix? (source: TargetModel, length: number): Promise<boolean>
  /** Counters for stats: runs sent, cancelled, failovers, route. */
  stats (): TargetStats
  /**
   * Runs each server computed, dropped before starting (early cancellation), aborted
   * mid-run and dropped on late arrival since this target opened, by peer id. Read from
   * the servers' counters, which count every client's runs: exact when this client is alone.
   */
  serverCounters? (): Promise<Record<string, ServerRunCounts>>
  close (): Promise<void>
}

export interface ServerRunCounts {
  computed: number
  droppedBeforeStart: number
  abortedMidRun: number
  droppedLate: number
}

export interface PendingRun {
  readonly runId: number
  readonly position: number
  readonly length: number
  /** (T, V): one row of logits per position of the run (empty before the submit's `logitsFrom`). */
  readonly logits: Promise<Float32Array[]>
}

export interface TargetStats {
  runsSent: number
  runsCancelled: number
  failovers: number
  /** Each re-route: old hop -> new hops, why, and how many positions were replayed. */
  routeChanges?: string[]
  /** Human-readable route, e.g. "12D3…a1[0,2) -> 12D3…b2[2,5)"; "local" for a LocalTarget. */
  route: string
  /** Hops on servers holding quantized blocks (`serve --quantize`), e.g. "…a1b2c3[0,2) int4". */
  quantizedHops?: string[]
  [key: string]: unknown
}

/** Convenience: one run, awaited. */
export async function forwardOnce (target: TargetModel, ids: readonly number[], position: number): Promise<Float32Array[]> {
  return await target.submit(ids, position).logits
}
