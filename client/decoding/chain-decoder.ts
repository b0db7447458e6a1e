import type { Sampler } from '../sampling/index.js'
import type { PendingRun, TargetModel } from '../target-model.js'
import { abortable } from './abortable.js'
import { DecodeRecorder, type DecodeMode, type DecodeStats, type DecodeStopReason } from './decode-stats.js'
import type { DraftToken, Drafter } from './drafter.js'
import { keyedRandom } from './keyed-random.js'
import { SpeculationController, type LearnedSpeculation, type SpeculationPlan } from './speculation-controller.js'
import { keyedCandidate, verifyCandidates, verifyToken, type Verdict } from './verify-token.js'
import { runLayout } from '../../model/token-tree.js'
import { branchCandidates, branchRows, childrenOf, pickBranches, type BranchRows } from './token-branches.js'
import { tokenLogprob, type LogprobLog } from './token-logprobs.js'

/** Validated decode settings. */
export interface ChainDecoderInit {
  /** Tokens already in the target's caches at positions [0, n). */
  readonly contextIds: readonly number[]
  readonly promptIds: readonly number[]
  readonly sampler: Sampler
  readonly maxNewTokens: number
  readonly eosTokenIds: ReadonlySet<number>
  readonly mode: DecodeMode
  /** Required unless mode is 'none' (where it is ignored). */
  readonly drafter: Drafter | undefined
  readonly k: number
  readonly maxInFlight: number
  /** Most branches per run (tree speculation; 0: chains). */
  readonly branches: number
  /** Draft tokens after each branch's first token. */
  readonly branchLength: number
  readonly adaptive: boolean
  readonly signal: AbortSignal | undefined
  /** What an earlier decode's controller learned: start from it. */
  readonly learned?: LearnedSpeculation | undefined
  /** Record each decided token's log-probability (and the prompt's) here. */
  readonly logprobs?: LogprobLog | undefined
}

interface Flight {
  readonly run: PendingRun
  readonly submittedAt: number
  /** Rows [0, trunk) are the chain; the rest are branches (tree speculation). */
  readonly trunk: number
  /** (T) every row's token */
  readonly tokens: readonly number[]
  /** Branch rows by parent row; undefined for a chain. */
  readonly children: ReadonlyMap<number, number[]> | undefined
  /** (T) positions of the rows */
  readonly positions: readonly number[]
  /** (T, V), once they have arrived */
  rows?: Float32Array[]
  /** performance.now() when the rows arrived: a run's round trip ends there */
  arrivedAt?: number
  /** No other run was in flight when this one was sent. */
  readonly alone: boolean
}

/** Verify-and-refill rounds before a batch of decided tokens is yielded. */
const MAX_ROUNDS_PER_BATCH = 4

/** Longest trunk that gets branches (MAX_TREE_ROWS and a frame's rows bound the whole run). */
export const MAX_TRUNK_WITH_BRANCHES = 64

const PLAIN: SpeculationPlan = { k: 0, depth: 1, confidenceScale: 1, minSurvival: 0, cutoff: 0, branches: 0, branchLength: 0 }

/**
 * Decodes one sequence over a chain of target runs; all three modes are this loop with a
 * different plan (none: no drafts, one run; sync: k drafts, one run; pipelined: several).
 *
 * State, by position: `#ctx` holds decided tokens (prompt + generated), `#spec` the
 * speculative ones after them (spec[j] at position ctx.length + j), and positions below
 * `#fedEnd` have been sent to the target. Each run's row j decides position start + 1 + j;
 * a decided token that differs from the speculation there (a rejection) cancels every later
 * run and rolls the chain back: the next run starts at that position with the decided token
 * first. Each position is decided exactly once, with randomness keyed by its position.
 *
 * Tree speculation: a run may also carry branches — the drafter's runner-up tokens (when
 * sampling, the verifier's next candidates) at its least certain positions, each with a short
 * drafted continuation. When the target rejects a trunk token for one of them, the branch's
 * rows already decide what follows, so those tokens come without another round trip; the next
 * run then re-feeds them (branch rows leave nothing in the caches) from the fork.
 */
export class ChainDecoder {
  readonly #target: TargetModel
  readonly #init: ChainDecoderInit
  readonly #drafter: Drafter | undefined
  readonly #controller: SpeculationController | undefined
  readonly #rec = new DecodeRecorder()
  readonly #ctx: number[]
  /** Positions decided before decoding: context + prompt. */
  readonly #inputLength: number
  readonly #flights: Flight[] = []
  #spec: DraftToken[] = []
  #fedEnd: number
  #plan = PLAIN
  /** When the decoder last stopped waiting for a result: the busy share is measured between these. */
  #lastWaitEnd = performance.now()
  #stopReason: DecodeStopReason | undefined

  constructor (target: TargetModel, init: ChainDecoderInit) {
    this.#target = target
    this.#init = init
    this.#ctx = [...init.contextIds, ...init.promptIds]
    this.#inputLength = this.#ctx.length
    // Cached positions are not sent again, but the last input token must be for its row.
    this.#fedEnd = Math.min(init.contextIds.length, this.#ctx.length - 1)
    if (init.mode !== 'none') {
      this.#drafter = init.drafter
      this.#controller = new SpeculationController({
        mode: init.mode,
        maxK: init.k,
        maxDepth: init.maxInFlight,
        maxBranches: init.drafter?.continueBranches !== undefined ? init.branches : 0,
        branchLength: init.branchLength,
        adaptive: init.adaptive,
        ...(init.learned !== undefined ? { from: init.learned } : {})
      })
    }
  }

  /**
   * Yields each batch of newly decided tokens; returns the stats. The next runs are sent
   * before a batch is yielded, so the target works while the consumer handles it.
   */
  async * steps (): AsyncGenerator<number[], DecodeStats> {
    const { signal } = this.#init
    signal?.throwIfAborted()
    let clientMs = 0 // drafting and verifying since the last cycle was measured
    let busy = performance.now()
    let sent = await this.#fill()
    clientMs += performance.now() - busy
    for (;;) {
      const head = this.#flights[0]
      if (head === undefined) throw new Error(`Decoder stalled at position ${this.#ctx.length}: no run in flight and nothing to send`)
      const waitFrom = performance.now()
      await abortable(head.run.logits, signal)
      busy = performance.now()
      this.#controller?.observeWaiting(busy - waitFrom, busy - this.#lastWaitEnd)
      this.#lastWaitEnd = busy
      const batch: number[] = []
      // Decide from every result that has arrived, oldest first, before drafting more; a
      // result that comes in while drafting stops the refill and is decided at once, before
      // the batch goes to the consumer (a few rounds at most, so tokens still stream).
      for (let round = 0; round < MAX_ROUNDS_PER_BATCH; round++) {
        for (let f = this.#flights[0]; f?.rows !== undefined && this.#stopReason === undefined; f = this.#flights[0]) {
          this.#flights.shift()
          this.#controller?.observeRun((f.arrivedAt ?? busy) - f.submittedAt, f.alone, f.tokens.length)
          batch.push(...await this.#verify(f, f.rows))
        }
        if (this.#stopReason !== undefined) break
        signal?.throwIfAborted()
        this.#controller?.observeCycle((clientMs + performance.now() - busy) / Math.max(1, sent))
        clientMs = 0
        busy = performance.now()
        sent = await this.#fill()
        clientMs += performance.now() - busy
        if (this.#flights[0]?.rows === undefined) break
      }
      if (batch.length > 0) {
        this.#rec.tokens(batch.length)
        yield batch
      }
      if (this.#stopReason !== undefined) {
        return this.#rec.finish(this.#init.mode, this.#stopReason, this.#target.stats(), this.#plan)
      }
    }
  }

  /** What the speculation controller has learned so far (undefined in mode none). */
  learned (): LearnedSpeculation | undefined {
    return this.#controller?.learned()
  }

  /** Cancels every run still in flight (idempotent). */
  cancelAll (): void {
    if (this.#flights.length === 0) return
    const ids = this.#flights.map(f => f.run.runId)
    this.#flights.length = 0
    this.#rec.runsCancelled += ids.length
    this.#target.cancel(ids)
  }

  /** Submits runs until the plan's depth is in flight or there is nothing left to send; returns how many. */
  async #fill (): Promise<number> {
    this.#plan = this.#controller?.plan() ?? PLAIN
    // The last decision needs the row of position input + max - 2: nothing at or past `end` is worth sending.
    const end = this.#inputLength + this.#init.maxNewTokens - 1
    let sent = 0
    while (this.#flights.length < this.#plan.depth) {
      // a result that came in while we drafted goes first: it may cancel what we would draft next
      if (sent > 0 && this.#flights[0]?.rows !== undefined) break
      const start = this.#fedEnd
      const decided = this.#ctx.slice(start) // the prompt, or the one decided token not sent yet
      const specFrom = Math.max(0, start - this.#ctx.length)
      const room = Math.min(this.#plan.k, end - start - decided.length)
      const drafts = room > 0 ? await this.#draftsAt(specFrom, room) : []
      if (decided.length === 0 && drafts.length === 0) break
      const ids = [...decided, ...drafts.map(d => d.token)]
      const branches = await this.#branchesFor(start, decided.length, specFrom, drafts, end)
      const tokens = [...ids, ...branches.tokens]
      const parents = branches.tokens.length === 0 ? undefined : [...ids.map((_, i) => i - 1), ...branches.parents]
      // rows of tokens already decided (the prompt, or tokens re-fed after a branch) decide
      // nothing: no LM head for them, unless the log wants the prompt's
      const logitsFrom = this.#init.logprobs !== undefined ? 0 : Math.max(0, decided.length - 1)
      const run = this.#target.submit(tokens, start, parents, logitsFrom)
      const flight: Flight = {
        run,
        submittedAt: performance.now(),
        alone: this.#flights.length === 0,
        trunk: ids.length,
        tokens,
        children: parents === undefined ? undefined : childrenOf(parents, ids.length),
        positions: parents === undefined ? [] : runLayout(start, tokens.length, parents).positions
      }
      run.logits.then(rows => { flight.rows = rows; flight.arrivedAt = performance.now() }, () => {}) // a cancelled run rejects; nobody may be listening
      this.#flights.push(flight)
      this.#fedEnd = start + ids.length
      this.#rec.runsSubmitted++
      this.#rec.proposed += drafts.length
      this.#rec.branchRows += branches.tokens.length
      sent++
    }
    return sent
  }

  /**
   * Up to `count` speculative tokens from spec[from], drafting more as needed, as long as
   * their survival chance stays above the plan's bar.
   */
  async #draftsAt (from: number, count: number): Promise<DraftToken[]> {
    const drafter = this.#drafter
    if (drafter === undefined) return []
    const { cutoff, confidenceScale, minSurvival } = this.#plan
    const need = from + count
    while (this.#spec.length < need && this.#survival(this.#spec.length) >= minSurvival) {
      const asked = need - this.#spec.length
      const more = await this.#propose(drafter, asked, cutoff)
      this.#spec.push(...more)
      if (more.length < asked) break // stopped at low confidence, or nothing more to propose
    }
    const picked: DraftToken[] = []
    let survival = this.#survival(from)
    for (const d of this.#spec.slice(from, need)) {
      survival *= Math.min(1, d.confidence * confidenceScale)
      if (survival < minSurvival) break
      picked.push(d)
    }
    return picked
  }

  /**
   * Branches for a run whose trunk drafts (rows firstDraft..) are spec[specFrom..]: the
   * plan's number of runner-up tokens with the best chance to be the target's choice (the
   * chance to get there times the drafter's belief in them) and at least the survival bar,
   * each followed by a greedy continuation. Rows stay below `end`, the last useful position.
   * A branch at trunk row r is row r's sibling (it replaces row r's draft); at row `trunk`
   * it replaces the first draft of the next run.
   */
  async #branchesFor (start: number, firstDraft: number, specFrom: number, drafts: readonly DraftToken[], end: number): Promise<BranchRows> {
    const { branches, branchLength, confidenceScale, minSurvival, depth, branchSurvival = minSurvival } = this.#plan
    const drafter = this.#drafter
    const trunk = firstDraft + drafts.length
    // a prefill-sized run goes without: its rows would pass the tree limits of the wire and the frame
    if (branches === 0 || drafter?.continueBranches === undefined || drafts.length === 0 || trunk > MAX_TRUNK_WITH_BRANCHES) return { tokens: [], parents: [] }
    // with runs in flight the draft after this trunk opens the next run, but this run judges it
    const [next] = depth > 1 && start + trunk < end ? await this.#draftsAt(specFrom + drafts.length, 1) : []
    const picked = pickBranches(branchCandidates(drafts, firstDraft, this.#survival(specFrom), confidenceScale, next), branches, branchSurvival)
    if (picked.length === 0) return { tokens: [], parents: [] }
    const t = performance.now()
    const context = [...this.#ctx, ...this.#spec.slice(0, specFrom + drafts.length).map(d => d.token)]
    const length = Math.min(branchLength, end - 1 - (start + firstDraft))
    const forks = picked.map(c => ({ at: start + c.row, token: c.token }))
    const continuations = length > 0 ? await drafter.continueBranches({ context, forks, length, sampler: this.#init.sampler }) : []
    this.#controller?.observeDrafting(length, performance.now() - t)
    return branchRows(picked, continuations, start, trunk, end)
  }

  /** Estimated chance that spec[0..n) are all accepted. */
  #survival (n: number): number {
    let survival = 1
    for (const d of this.#spec.slice(0, n)) survival *= Math.min(1, d.confidence * this.#plan.confidenceScale)
    return survival
  }

  async #propose (drafter: Drafter, maxTokens: number, minConfidence: number): Promise<DraftToken[]> {
    const t = performance.now()
    const context = [...this.#ctx, ...this.#spec.map(d => d.token)]
    const drafts = await drafter.propose({ context, maxTokens, sampler: this.#init.sampler, minConfidence })
    this.#controller?.observeDrafting(drafts.length, performance.now() - t)
    return drafts
  }

  /**
   * Decides positions from one run's rows (T, V) until a rejection or a stop; returns them.
   * After a rejection a branch carrying the decided token goes on deciding (tree speculation).
   */
  async #verify (flight: Flight, rows: readonly Float32Array[]): Promise<number[]> {
    const { sampler, eosTokenIds, maxNewTokens } = this.#init
    const { run } = flight
    const batch: number[] = []
    for (let j = 0; j < flight.trunk; j++) {
      const row = rows[j] as Float32Array
      const pos = run.position + 1 + j
      if (pos < this.#ctx.length) { // a row inside the decided tokens (the prompt) decides nothing
        this.#logPromptToken(row, pos)
        continue
      }
      if (pos > this.#ctx.length) throw new Error(`Cannot verify position ${pos}: ${this.#ctx.length} positions are decided`)
      // Sampling decides a position against the draft there, sent or not (same seed, same text).
      if (this.#spec.length === 0 && !sampler.greedy && this.#drafter !== undefined) {
        this.#spec.push(...await this.#propose(this.#drafter, 1, 0))
      }
      const draft = this.#spec[0]
      const verdict = this.#judge(row, draft, pos)
      if (draft !== undefined) {
        this.#controller?.observeDraft(verdict.accepted, draft.confidence)
        if (pos < this.#fedEnd) {
          this.#rec.verified++
          if (verdict.accepted) this.#rec.accepted++
        }
      }
      batch.push(verdict.token)
      if (verdict.accepted) this.#spec.shift()
      else this.#rollback(pos)
      if (this.#decide(verdict.token, row, eosTokenIds, maxNewTokens)) break
      if (verdict.accepted) continue
      // later trunk rows saw the wrong token; a branch that put the decided one here did not
      const hit = flight.children?.get(j)?.find(c => flight.tokens[c] === verdict.token)
      if (hit !== undefined) {
        this.#rec.rescued++
        batch.push(...await this.#walkBranch(flight, rows, hit))
      }
      break
    }
    return batch
  }

  /**
   * The target's token at position `pos` from its logits row (V,), and whether it is the
   * draft's. Greedy needs only the argmax of the (penalized) logits: building the one-hot
   * distribution allocated two V-sized float64 arrays per decided token (512 KB for a 32K
   * vocabulary). Collecting them was the swarm client's largest cost after the LM head;
   * without them the 200M swarm went from 0.74x to 0.79x local (bench:swarm, 4 runs each).
   * Sampling verifies the draft and then the further candidates the drafter named as its
   * alternatives, which the runs' branches may carry (verifyCandidates).
   */
  #judge (row: Float32Array, draft: DraftToken | undefined, pos: number): Verdict {
    const { sampler } = this.#init
    if (sampler.greedy) {
      const token = sampler.next(row, this.#ctx)
      return { token, accepted: draft?.token === token }
    }
    const p = sampler.distribution(row, this.#ctx)
    const random = keyedRandom(sampler.seed, pos, 'verify')
    const q = draft?.q
    if (draft === undefined || q === undefined) return verifyToken(p, draft, random, false)
    return verifyCandidates(p, draft, taken => keyedCandidate(q, taken, sampler.seed, pos), random)
  }

  /**
   * Decisions down a branch from its row `first`, whose token is already decided. Sampling
   * decides each position against the draft there, as on the trunk, so a branch changes only
   * when tokens arrive, never which.
   */
  async #walkBranch (flight: Flight, rows: readonly Float32Array[], first: number): Promise<number[]> {
    const { eosTokenIds, maxNewTokens, sampler } = this.#init
    const batch: number[] = []
    for (let r: number | undefined = first; r !== undefined;) {
      const pos = (flight.positions[r] as number) + 1
      if (pos !== this.#ctx.length) throw new Error(`Cannot verify branch row ${r} at position ${pos}: ${this.#ctx.length} positions are decided`)
      const [draft] = sampler.greedy || this.#drafter === undefined ? [] : await this.#propose(this.#drafter, 1, 0)
      const row = rows[r] as Float32Array
      const { token } = this.#judge(row, draft, pos)
      batch.push(token)
      this.#rec.branchTokens++
      if (this.#decide(token, row, eosTokenIds, maxNewTokens)) break
      r = flight.children?.get(r)?.find(c => flight.tokens[c] === token)
    }
    return batch
  }

  /** Appends a token decided from logits `row`; true when decoding stops with it (every run is then cancelled). */
  #decide (token: number, row: Float32Array, eosTokenIds: ReadonlySet<number>, maxNewTokens: number): boolean {
    const log = this.#init.logprobs
    if (log !== undefined) log.generated.push(tokenLogprob(row, token, log.top))
    this.#ctx.push(token)
    const generated = this.#ctx.length - this.#inputLength
    if (!eosTokenIds.has(token) && generated < maxNewTokens) return false
    this.#stopReason = eosTokenIds.has(token) ? 'eos' : 'max-new-tokens'
    this.cancelAll()
    return true
  }

  /**
   * Logs the prompt token at `pos` from the row before it. Rows re-fed after a branch walk
   * also land inside the decided tokens: generated ones were logged when decided.
   */
  #logPromptToken (row: Float32Array, pos: number): void {
    const log = this.#init.logprobs
    const index = pos - this.#init.contextIds.length
    if (log === undefined || index < 0 || index >= this.#init.promptIds.length || log.prompt[index] !== undefined) return
    log.prompt[index] = tokenLogprob(row, this.#ctx[pos] as number, log.top)
  }

  /** Position `pos` was decided against the speculation: drop it, cancel what built on it. */
  #rollback (pos: number): void {
    this.#spec = []
    if (this.#fedEnd > pos) {
      this.cancelAll()
      this.#fedEnd = pos
    }
  }
}
