/** What the controller has measured so far. */
export interface SpeculationEstimates {
  /** Recent share of verified draft tokens that were accepted, in [0, 1]. */
  readonly acceptance: number
  /** Recent mean draft confidence of those tokens, in (0, 1]. */
  readonly confidence: number
  /**
   * Recent time from submitting a run to its logits (ms), over runs sent while no other was
   * in flight: the latency there is to hide, without the queueing that runs in flight add
   * to each other. Undefined before the first.
   */
  readonly runMs: number | undefined
  /** Recent client time to draft one token (ms). */
  readonly draftMsPerToken: number | undefined
  /** Recent client time spent per run on drafting and verifying (ms). */
  readonly cycleMs: number | undefined
  /**
   * Recent share of wall time the client was busy (drafting, verifying, handing tokens
   * out) rather than waiting for a result, in [0, 1]; undefined before it is measured.
   */
  readonly busy?: number | undefined
}

/** Bounds and mode. */
export interface SpeculationLimits {
  readonly mode: 'sync' | 'pipelined'
  /** Most draft tokens in one run. */
  readonly maxK: number
  /** Most runs in flight (1 in sync mode). */
  readonly maxDepth: number
  /** Most branches per run (tree speculation; 0: chains only). */
  readonly maxBranches: number
  /** Draft tokens after a branch's first token. */
  readonly branchLength: number
}

/** How to speculate next. */
export interface SpeculationPlan {
  /** Draft tokens per run. */
  readonly k: number
  /** Runs to keep in flight. */
  readonly depth: number
  /**
   * A draft token's chance to be accepted is estimated as min(1, confidence * confidenceScale)
   * (confidence calibrated by recent acceptance); a run carries a draft only while the
   * product of these estimates from the first undecided position, its survival chance,
   * stays >= minSurvival.
   */
  readonly confidenceScale: number
  readonly minSurvival: number
  /** Drafting stops after a token whose confidence alone fails minSurvival. */
  readonly cutoff: number
  /** Most branches per run; each must pass the same survival bar (its chance to be used). */
  readonly branches: number
  readonly branchLength: number
}

/**
 * Bounds of the survival bar: never speculate on tokens likelier than 1 - MAX to be wasted,
 * nor hold back ones likelier than MAX to be used. The floor is low because over a slow
 * link the client mostly waits and a branch costs the servers only a few rows: a draft or
 * branch costs little more than its drafting time. Measured on stories260k at 20 ms:
 * 0.02 cost 5% of pipelined-adaptive throughput against 0.005, and 0.005 cost 5-10%
 * against 0.001 (it left out about a fifth of the branch rows, branches with a 0.1-0.5%
 * chance each, which together rescue enough runs to pay for their rows).
 */
const MIN_BAR = 0.001
const MAX_BAR = 0.5
/** The bar before there are timings. */
const DEFAULT_BAR = 0.1

/** Tokens decided per run of k drafts when each is accepted with probability a: 1 + a + ... + a^k. */
export function expectedTokens (acceptance: number, k: number): number {
  if (acceptance >= 1) return k + 1
  return (1 - acceptance ** (k + 1)) / (1 - acceptance)
}

/**
 * The speculation plan for measured acceptance and timings (a pure decision).
 *
 * - survival bar: a draft token is worth sending when its chance to be used times what it
 *   saves (about one run's round trip) exceeds its cost (drafting it): bar = draft ms per
 *   token / run ms. Slow networks speculate deep, fast local targets shallow. In pipelined
 *   mode drafting only costs what it takes from a busy client: time it would have spent
 *   waiting for results is free, so the bar is scaled by the measured busy share (with a
 *   slow draft the full bar stalled the pipeline it was meant to keep full).
 * - sync: k maximizes expected tokens per run over the run's time (round trip + drafting);
 *   poor drafts or slow drafting give k = 1, close to plain decoding.
 * - pipelined: the speculation window (draft tokens in flight) reaches as deep as
 *   acceptance^m stays above the bar; runs in flight cover one round trip of client cycles;
 *   the window is split into runs of k. Poor acceptance shrinks it to one run of one draft.
 * - confidence: within that, drafts whose calibrated chance to survive falls below the bar
 *   are not sent, so drafting stops early where the draft is unsure.
 */
export function planSpeculation (est: SpeculationEstimates, limits: SpeculationLimits): SpeculationPlan {
  const a = Math.min(1, Math.max(0, est.acceptance))
  const busy = limits.mode === 'pipelined' ? clamp(est.busy ?? 1, 0, 1) : 1 // sync drafts on the critical path
  const bar = est.runMs !== undefined && est.draftMsPerToken !== undefined
    ? clamp((busy * est.draftMsPerToken) / Math.max(est.runMs, 1e-3), MIN_BAR, MAX_BAR)
    : DEFAULT_BAR
  const confidenceScale = a / Math.max(est.confidence, 1e-3)
  const gate = { confidenceScale, minSurvival: bar, cutoff: Math.min(1, bar / Math.max(confidenceScale, 1e-3)), branches: limits.maxBranches, branchLength: limits.branchLength }
  if (limits.mode === 'sync') {
    if (est.runMs === undefined) return { k: window(a, bar, limits.maxK), depth: 1, ...gate }
    const draftMs = est.draftMsPerToken ?? 0
    let best = 1
    let bestRate = 0
    for (let k = 1; k <= limits.maxK; k++) {
      const rate = expectedTokens(a, k) / (est.runMs + k * draftMs)
      if (rate > bestRate * (1 + 1e-9)) {
        best = k
        bestRate = rate
      }
    }
    return { k: best, depth: 1, ...gate }
  }
  const span = window(a, bar, limits.maxK * limits.maxDepth)
  let depth = limits.maxDepth
  if (est.runMs !== undefined && est.cycleMs !== undefined) depth = clamp(Math.ceil(est.runMs / Math.max(est.cycleMs, 0.05)), 1, limits.maxDepth)
  const k = clamp(Math.ceil(span / depth), 1, limits.maxK)
  depth = clamp(Math.min(depth, Math.ceil(span / k)), 1, limits.maxDepth)
  return { k, depth, ...gate }
}

/** Draft tokens worth having in flight: the deepest m with a^m >= bar, in [1, max]. */
function window (a: number, bar: number, max: number): number {
  if (a >= 1) return max
  if (a <= bar) return 1
  return clamp(Math.floor(Math.log(bar) / Math.log(a)), 1, max)
}

function clamp (x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x))
}

/** Limits, plus whether to adapt and the acceptance to assume at first. */
export interface SpeculationControllerInit extends SpeculationLimits {
  /** false: always plan k = maxK, depth = maxDepth (1 in sync), every draft sent. Default true. */
  adaptive?: boolean
  /** Acceptance assumed before any is measured. Default 0.7. */
  priorAcceptance?: number
}

/** Keeps running estimates (exponential moving averages) and turns them into plans. */
export class SpeculationController {
  readonly #limits: SpeculationLimits
  readonly #adaptive: boolean
  #acceptance: number
  #confidence = 0.5
  #runMs: number | undefined
  #draftMsPerToken: number | undefined
  #cycleMs: number | undefined
  #busy: number | undefined

  constructor (init: SpeculationControllerInit) {
    this.#limits = { mode: init.mode, maxK: init.maxK, maxDepth: init.mode === 'sync' ? 1 : init.maxDepth, maxBranches: init.maxBranches, branchLength: init.branchLength }
    this.#adaptive = init.adaptive ?? true
    this.#acceptance = init.priorAcceptance ?? 0.7
  }

  /** One verified draft token and the drafter's confidence in it. */
  observeDraft (accepted: boolean, confidence: number): void {
    this.#acceptance = ewma(this.#acceptance, accepted ? 1 : 0, 0.1)
    this.#confidence = ewma(this.#confidence, confidence, 0.1)
  }

  /**
   * A run's round trip; `alone`: no other run was in flight when it was sent. Only those
   * count: behind other runs a round trip also holds their compute, and a depth planned from
   * it would keep growing on a target whose servers are the bottleneck (a loopback swarm on
   * shared cores: depth 4 of 4-token runs ran at 780 tokens/s there, depth 2 of 12 at 1245).
   */
  observeRun (ms: number, alone = true): void {
    if (alone) this.#runMs = ewma(this.#runMs, ms, 0.25)
  }

  /** Drafting `tokens` took `ms`. */
  observeDrafting (tokens: number, ms: number): void {
    if (tokens > 0) this.#draftMsPerToken = ewma(this.#draftMsPerToken, ms / tokens, 0.25)
  }

  /** Client time spent on one run (drafting + verifying). */
  observeCycle (ms: number): void {
    this.#cycleMs = ewma(this.#cycleMs, ms, 0.25)
  }

  /** Of `wallMs` just passed, the client spent `waitedMs` waiting for results. */
  observeWaiting (waitedMs: number, wallMs: number): void {
    if (wallMs > 0) this.#busy = ewma(this.#busy, 1 - Math.min(waitedMs, wallMs) / wallMs, 0.25)
  }

  get estimates (): SpeculationEstimates {
    return { acceptance: this.#acceptance, confidence: this.#confidence, runMs: this.#runMs, draftMsPerToken: this.#draftMsPerToken, cycleMs: this.#cycleMs, busy: this.#busy }
  }

  plan (): SpeculationPlan {
    const { maxK: k, maxDepth: depth, maxBranches: branches, branchLength } = this.#limits
    if (!this.#adaptive) return { k, depth, confidenceScale: 1, minSurvival: 0, cutoff: 0, branches, branchLength }
    return planSpeculation(this.estimates, this.#limits)
  }
}

function ewma (prev: number | undefined, x: number, weight: number): number {
  return prev === undefined ? x : prev + weight * (x - prev)
}
