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
  /**
   * What one more row adds to a run's round trip (ms, >= 0): the slope of round trip over
   * rows among runs sent alone. About 0 where servers are fast and the network is slow; on
   * servers whose compute grows with rows (a big model) every speculative row costs this much.
   */
  readonly rowMs?: number | undefined
  /** Mean rows of recent runs sent alone: the line of rowMs passes through (meanRows, runMs). */
  readonly meanRows?: number | undefined
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
  /** Most branches per run; each must pass branchSurvival (its chance to be used). */
  readonly branches: number
  readonly branchLength: number
  /**
   * The bar for a branch: minSurvival, plus what its continuation rows cost the servers
   * (a branch is 1 + branchLength rows; drafting them is shared by all branches). Default
   * minSurvival.
   */
  readonly branchSurvival?: number
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
 * - survival bar: a draft token (or branch row) is worth sending when its chance to be used
 *   times what it saves (about one run's round trip) exceeds its cost: drafting it plus the
 *   row's own share of the servers' time (rowMs): bar = (draft ms per token + row ms) / run
 *   ms. Slow networks speculate deep, fast local targets and servers whose compute grows
 *   with rows shallow. In pipelined mode drafting only costs what it takes from a busy
 *   client: time it would have spent waiting for results is free, so the drafting part is
 *   scaled by the measured busy share (with a slow draft the full bar stalled the pipeline
 *   it was meant to keep full).
 * - sync: k maximizes expected tokens per run over the run's time (round trip at k + 1 rows
 *   + drafting); poor drafts, slow drafting or costly rows give small k, down to 1.
 * - pipelined: the speculation window (draft tokens in flight) reaches as deep as
 *   acceptance^m stays above the bar; runs in flight cover one round trip of client cycles;
 *   the window is split into runs of k. Poor acceptance shrinks it to one run of one draft.
 * - confidence: within that, drafts whose calibrated chance to survive falls below the bar
 *   are not sent, so drafting stops early where the draft is unsure.
 */
export function planSpeculation (est: SpeculationEstimates, limits: SpeculationLimits): SpeculationPlan {
  const a = Math.min(1, Math.max(0, est.acceptance))
  const busy = limits.mode === 'pipelined' ? clamp(est.busy ?? 1, 0, 1) : 1 // sync drafts on the critical path
  const rowMs = Math.max(0, est.rowMs ?? 0)
  const bar = est.runMs !== undefined && est.draftMsPerToken !== undefined
    ? clamp((busy * est.draftMsPerToken + rowMs) / Math.max(est.runMs, 1e-3), MIN_BAR, MAX_BAR)
    : DEFAULT_BAR
  const confidenceScale = a / Math.max(est.confidence, 1e-3)
  const branchSurvival = est.runMs !== undefined ? clamp(bar + (rowMs * limits.branchLength) / Math.max(est.runMs, 1e-3), bar, MAX_BAR) : bar
  const gate = { confidenceScale, minSurvival: bar, cutoff: Math.min(1, bar / Math.max(confidenceScale, 1e-3)), branches: limits.maxBranches, branchLength: limits.branchLength, branchSurvival }
  if (limits.mode === 'sync') {
    if (est.runMs === undefined) return { k: window(a, bar, limits.maxK), depth: 1, ...gate }
    const draftMs = est.draftMsPerToken ?? 0
    const runMsAt = (rows: number): number => Math.max(1e-3, est.runMs as number + rowMs * (rows - (est.meanRows ?? rows)))
    let best = 1
    let bestRate = 0
    for (let k = 1; k <= limits.maxK; k++) {
      const rate = expectedTokens(a, k) / (runMsAt(k + 1) + k * draftMs)
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

/** Limits, plus whether to adapt and where to start from. */
export interface SpeculationControllerInit extends SpeculationLimits {
  /** false: always plan k = maxK, depth = maxDepth (1 in sync), every draft sent. Default true. */
  adaptive?: boolean
  /** Acceptance assumed before any is measured. Default 0.7. */
  priorAcceptance?: number
  /** What an earlier controller learned (its `learned()`): start from it instead of priors. */
  from?: LearnedSpeculation
}

/** A controller's running estimates, as plain data (SpeculationMemory keeps them between decodes). */
export interface LearnedSpeculation {
  readonly acceptance: number
  readonly confidence: number
  readonly runMs: number | undefined
  readonly rowFit: RowFitMoments
  readonly draftMsPerToken: number | undefined
  readonly cycleMs: number | undefined
  readonly busy: number | undefined
}

/** Keeps running estimates (exponential moving averages) and turns them into plans. */
export class SpeculationController {
  readonly #limits: SpeculationLimits
  readonly #adaptive: boolean
  #acceptance: number
  #confidence: number
  #runMs: number | undefined
  readonly #rowFit: RowCostFit
  #draftMsPerToken: number | undefined
  #cycleMs: number | undefined
  #busy: number | undefined

  constructor (init: SpeculationControllerInit) {
    this.#limits = { mode: init.mode, maxK: init.maxK, maxDepth: init.mode === 'sync' ? 1 : init.maxDepth, maxBranches: init.maxBranches, branchLength: init.branchLength }
    this.#adaptive = init.adaptive ?? true
    const from = init.from
    this.#acceptance = from?.acceptance ?? init.priorAcceptance ?? 0.7
    this.#confidence = from?.confidence ?? 0.5
    this.#runMs = from?.runMs
    this.#rowFit = new RowCostFit(from?.rowFit)
    this.#draftMsPerToken = from?.draftMsPerToken
    this.#cycleMs = from?.cycleMs
    this.#busy = from?.busy
  }

  /** The estimates so far, to start a later controller from (SpeculationControllerInit.from). */
  learned (): LearnedSpeculation {
    return { acceptance: this.#acceptance, confidence: this.#confidence, runMs: this.#runMs, rowFit: this.#rowFit.moments, draftMsPerToken: this.#draftMsPerToken, cycleMs: this.#cycleMs, busy: this.#busy }
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
   * `rows`, the run's row count, feeds the fit of what a row costs.
   */
  observeRun (ms: number, alone = true, rows?: number): void {
    if (!alone) return
    this.#runMs = ewma(this.#runMs, ms, 0.25)
    if (rows !== undefined) this.#rowFit.add(rows, ms)
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
    return {
      acceptance: this.#acceptance,
      confidence: this.#confidence,
      runMs: this.#runMs,
      rowMs: this.#rowFit.slope,
      meanRows: this.#rowFit.meanRows,
      draftMsPerToken: this.#draftMsPerToken,
      cycleMs: this.#cycleMs,
      busy: this.#busy
    }
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

/**
 * Round trip against rows, fitted as a line over recent runs (exponentially weighted
 * moments): the slope is what a row costs. Its noise would raise the survival bar where rows
 * cost nothing (over a slow link a round trip jitters by milliseconds), and a bar raised by
 * even 0.002 drops branches that pay for themselves, so the slope counts only beyond two
 * standard errors.
 */
class RowCostFit {
  static readonly WEIGHT = 0.1
  /** runs seen, and the weighted means of rows (x), round trip (y) and their products */
  #m: RowFitMoments

  constructor (from: RowFitMoments = { n: 0, x: 0, y: 0, xx: 0, xy: 0, yy: 0 }) {
    this.#m = { ...from }
  }

  get moments (): RowFitMoments { return { ...this.#m } }

  add (rows: number, ms: number): void {
    const m = this.#m
    const w = Math.max(RowCostFit.WEIGHT, 1 / (m.n + 1)) // the first few equally, then recent ones more
    this.#m = {
      n: m.n + 1,
      x: m.x + w * (rows - m.x),
      y: m.y + w * (ms - m.y),
      xx: m.xx + w * (rows * rows - m.xx),
      xy: m.xy + w * (rows * ms - m.xy),
      yy: m.yy + w * (ms * ms - m.yy)
    }
  }

  get meanRows (): number | undefined { return this.#m.n === 0 ? undefined : this.#m.x }

  /** ms per row, >= 0 (a row never makes a run faster), once rows have varied by about one. */
  get slope (): number | undefined { return rowCostOf(this.#m) }
}

/** What a row costs by the fit's moments (RowCostFit.slope): ms, beyond two standard errors; undefined before rows varied. */
export function rowCostOf ({ n, x, y, xx, xy, yy }: RowFitMoments): number | undefined {
  const varRows = xx - x * x
  if (n < 3 || varRows < 1) return undefined
  const cov = xy - x * y
  const slope = cov / varRows
  const residual = Math.max(0, yy - y * y - (cov * cov) / varRows)
  const samples = Math.min(n, 2 / RowCostFit.WEIGHT - 1) // effective number of runs in the averages
  const standardError = Math.sqrt(residual / (Math.max(1, samples - 2) * varRows))
  return Math.max(0, slope - 2 * standardError)
}

/** Exponentially weighted moments of (rows, round trip ms) over runs sent alone. */
export interface RowFitMoments {
  readonly n: number
  readonly x: number
  readonly y: number
  readonly xx: number
  readonly xy: number
  readonly yy: number
}
