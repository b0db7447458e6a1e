import type { TargetStats } from '../target-model.js'
import type { SpeculationPlan } from './speculation-controller.js'

/** Decoding modes: plain, draft-then-verify, and PipeInfer's pipelined speculation. */
export type DecodeMode = 'none' | 'sync' | 'pipelined'

/** Why decoding ended normally. */
export type DecodeStopReason = 'eos' | 'max-new-tokens'

/** What a decode did and how fast, returned when the generator finishes. */
export interface DecodeStats {
  readonly mode: DecodeMode
  readonly stopReason: DecodeStopReason
  readonly newTokens: number
  /** Draft tokens sent to the target inside runs. */
  readonly proposed: number
  /** Sent draft tokens that were verified (the rest were cancelled after an earlier rejection). */
  readonly verified: number
  /** Verified draft tokens that were accepted. */
  readonly accepted: number
  /** accepted / verified (0 with no drafts). */
  readonly acceptanceRate: number
  /** Tree speculation: branch rows sent, rejections a branch rescued, tokens decided in branches. */
  readonly branchRows: number
  readonly rescued: number
  readonly branchTokens: number
  readonly runsSubmitted: number
  /** Runs this decode cancelled (queued or not yet arrived). */
  readonly runsCancelled: number
  /** The target's own counters at the end. */
  readonly targetRuns: TargetStats
  /** Time from the start to the first yielded token (ms). */
  readonly ttftMs: number
  /** Per generated token after the first: ms since the previous token arrived (0 inside a batch). */
  readonly interTokenMs: readonly number[]
  readonly interTokenP50Ms: number
  readonly interTokenP95Ms: number
  readonly elapsedMs: number
  /** newTokens over elapsed time, prefill included. */
  readonly tokensPerSecond: number
  /** The last plan of the adaptive controller (k, depth, cutoff); k = 0 in mode none. */
  readonly plan: SpeculationPlan
}

/** The q-quantile (0..1) of values, by linear interpolation; 0 for none. */
export function percentile (values: readonly number[], q: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * Math.min(1, Math.max(0, q))
  const lo = Math.floor(at)
  const hi = Math.ceil(at)
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo)
}

/** Counts and clocks one decode. */
export class DecodeRecorder {
  readonly #start = performance.now()
  #firstAt: number | undefined
  #lastAt: number | undefined
  readonly #gaps: number[] = []
  newTokens = 0
  proposed = 0
  verified = 0
  accepted = 0
  runsSubmitted = 0
  runsCancelled = 0
  branchRows = 0
  rescued = 0
  branchTokens = 0

  /** A batch of `count` tokens was handed to the consumer now. */
  tokens (count: number): void {
    if (count === 0) return
    const now = performance.now()
    if (this.#lastAt === undefined) {
      this.#firstAt = now
      for (let i = 1; i < count; i++) this.#gaps.push(0)
    } else {
      this.#gaps.push(now - this.#lastAt)
      for (let i = 1; i < count; i++) this.#gaps.push(0)
    }
    this.#lastAt = now
    this.newTokens += count
  }

  finish (mode: DecodeMode, stopReason: DecodeStopReason, targetRuns: TargetStats, plan: SpeculationPlan): DecodeStats {
    const elapsedMs = performance.now() - this.#start
    return {
      mode,
      stopReason,
      newTokens: this.newTokens,
      proposed: this.proposed,
      verified: this.verified,
      accepted: this.accepted,
      acceptanceRate: this.verified === 0 ? 0 : this.accepted / this.verified,
      branchRows: this.branchRows,
      rescued: this.rescued,
      branchTokens: this.branchTokens,
      runsSubmitted: this.runsSubmitted,
      runsCancelled: this.runsCancelled,
      targetRuns,
      ttftMs: (this.#firstAt ?? performance.now()) - this.#start,
      interTokenMs: this.#gaps,
      interTokenP50Ms: percentile(this.#gaps, 0.5),
      interTokenP95Ms: percentile(this.#gaps, 0.95),
      elapsedMs,
      tokensPerSecond: elapsedMs > 0 ? this.newTokens / (elapsedMs / 1000) : 0,
      plan
    }
  }
}
