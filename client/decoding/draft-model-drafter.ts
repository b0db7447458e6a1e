import type { Checkpoint } from '../../model/checkpoint.js'
import { WholeModel } from '../../model/whole-model.js'
import { argmax, type Sampler } from '../sampling/index.js'
import type { Alternative, BranchRequest, DraftRequest, DraftToken, Drafter } from './drafter.js'
import { keyedRandom } from './keyed-random.js'
import { runLayout, visibility } from '../../model/token-tree.js'
import { keyedCandidates } from './verify-token.js'

/**
 * Drafts with a small model of the same tokenizer, run whole on the client. Keeps its own
 * position-addressed KV cache: each call feeds only the context tokens it has not cached
 * and rolls back past a changed prefix, so a rejected speculation costs no re-prefill.
 *
 * Greedy decoding drafts the argmax (confidence: its softmax probability at temperature 1);
 * sampling draws from q, the sampler's distribution over the draft logits, with randomness
 * keyed by (seed, position) so the same context always gets the same proposal (confidence:
 * q's largest probability), and names the verifier's further candidates there
 * (keyedCandidate) as its alternatives.
 */
export class DraftModelDrafter implements Drafter {
  readonly #model: DraftSequenceModel
  #sequence: DraftSequence
  /** Tokens whose keys and values are cached, at positions 0.. */
  #cached: number[] = []
  /** logits (V,) after the last cached token */
  #lastRow: Float32Array | undefined
  /**
   * The last continueBranches' rows: a walk down a branch (or a run after it) asks for the
   * draft at the branch's contexts, which these rows already hold, so no model run is needed.
   */
  #branches: BranchMemo | undefined
  #busy = false

  constructor (model: DraftSequenceModel) {
    this.#model = model
    this.#sequence = model.newSession()
  }

  async propose ({ context, maxTokens, sampler, minConfidence = 0 }: DraftRequest): Promise<DraftToken[]> {
    if (context.length === 0) throw new RangeError('Cannot draft from an empty context: it needs at least one token')
    if (this.#busy) throw new Error('Cannot draft while another proposal is being drafted: calls must be made one at a time')
    this.#busy = true
    try {
      const seq = [...context]
      const out: DraftToken[] = []
      while (out.length < maxTokens) {
        const draft = this.#pick(this.#branchRow(seq) ?? await this.#nextRow(seq), seq, sampler)
        out.push(draft)
        seq.push(draft.token)
        if (draft.confidence < minConfidence) break
      }
      return out
    } finally {
      this.#busy = false
    }
  }

  /**
   * All forks advance together, one draft-model run per token of length. The first run is a
   * token tree (model/token-tree.ts) of the context from the earliest fork plus every fork
   * token. A sequence that keeps scratch rows (forwardMasked) keeps the tree's rows, and
   * each later run feeds only the branches' newest tokens, each seeing the context before
   * its fork and its own branch; otherwise each run re-feeds the whole tree so far. Either
   * way a level costs about one decoding step. A sampling `sampler` draws each token as
   * `propose` would from the branch's own context.
   */
  async continueBranches ({ context, forks, length, sampler }: BranchRequest): Promise<number[][]> {
    if (forks.length === 0 || length < 1) return forks.map(() => [])
    if (forks.some(f => !(Number.isInteger(f.at) && f.at >= 1 && f.at <= context.length))) {
      throw new RangeError(`Cannot fork at ${forks.map(f => f.at).join(', ')}: forks must lie in [1, ${context.length}]`)
    }
    if (this.#busy) throw new Error('Cannot draft while another proposal is being drafted: calls must be made one at a time')
    this.#busy = true
    try {
      let common = 0
      const limit = Math.min(context.length, this.#cached.length)
      while (common < limit && context[common] === this.#cached[common]) common++
      // rows [0, trunk) re-feed context[start..]: one trunk row at least, as the cache must end on context
      const start = Math.min(common, context.length - 1, ...forks.map(f => f.at - 1))
      const trunk = context.slice(start)
      const tree: BranchTree = { start, ids: [...trunk], parents: trunk.map((_, i) => i - 1), tips: [] }
      for (const f of forks) {
        tree.ids.push(f.token)
        tree.parents.push(f.at - 1 - start) // the row of context[at - 1]
        tree.tips.push(tree.ids.length - 1)
      }
      const sampled = sampler !== undefined && !sampler.greedy
      // a sampled branch's context: the context up to its fork, then its own tokens
      const paths = sampled ? forks.map(f => [...context.slice(0, f.at), f.token]) : []
      const pick = (row: Float32Array, b: number): number => {
        const path = paths[b]
        const token = sampler === undefined || path === undefined ? argmax(row) : sampledDraft(row, path, sampler).token
        path?.push(token)
        return token
      }
      const seq = this.#sequence
      this.#cached = context.slice(0, start) // what the cache surely holds until the first run is back
      const out = seq.forwardMasked !== undefined && seq.truncate !== undefined
        ? await this.#growBranches(seq as Required<DraftSequence>, tree, context, forks, length, pick)
        : await this.#refeedBranches(tree, context, forks, length, pick)
      this.#cached = [...context]
      return out
    } finally {
      this.#busy = false
    }
  }

  /** continueBranches over a sequence that keeps scratch rows: after the first run, F rows per level. */
  async #growBranches (seq: Required<DraftSequence>, tree: BranchTree, context: readonly number[], forks: BranchRequest['forks'], length: number, pick: (row: Float32Array, b: number) => number): Promise<number[][]> {
    const { start, ids, parents, tips } = tree
    const layout = runLayout(start, ids.length, parents)
    seq.truncate(start)
    let keep = start // where the scratch rows begin: the cache ends on context once the first run is in
    try {
      const first = await seq.forwardMasked(ids, layout.positions, visibility(layout, start)) // (rows, V): every row kept
      keep = context.length
      this.#lastRow = first[context.length - start - 1]
      const out = tips.map((tip, b) => [pick(first[tip] as Float32Array, b)])
      const memo = this.#rememberBranches(context, forks, out)
      tips.forEach((tip, b) => memo.rows[b]?.push(first[tip] as Float32Array))
      // storage rows of each branch so far (the trunk sits at its positions, the forks after it)
      const rowsOf = tips.map(tip => [start + tip])
      let stored = start + ids.length
      const F = forks.length
      for (let step = 1; step < length; step++) {
        const S = stored + F
        const mask = new Uint8Array(F * S)
        for (const [b, f] of forks.entries()) {
          mask.fill(1, b * S, b * S + f.at) // the context before the fork
          for (const r of rowsOf[b] as number[]) mask[b * S + r] = 1
          mask[b * S + stored + b] = 1 // itself
        }
        const rows = await seq.forwardMasked(out.map(o => o.at(-1) as number), forks.map(f => f.at + step), mask)
        for (const [b, o] of out.entries()) {
          memo.rows[b]?.push(rows[b] as Float32Array)
          o.push(pick(rows[b] as Float32Array, b))
          ;(rowsOf[b] as number[]).push(stored + b)
        }
        stored = S
      }
      return out
    } finally {
      seq.truncate(keep) // drop the scratch rows
    }
  }

  /** continueBranches by re-feeding the whole tree from `start` at every level. */
  async #refeedBranches (tree: BranchTree, context: readonly number[], forks: BranchRequest['forks'], length: number, pick: (row: Float32Array, b: number) => number): Promise<number[][]> {
    const { start, ids, parents, tips } = tree
    const out = tips.map((): number[] => [])
    const memo = this.#rememberBranches(context, forks, out)
    for (let step = 0; step < length; step++) {
      const rows = await this.#sequence.forward(ids, start, parents) // (rows, V)
      this.#lastRow = rows[context.length - start - 1]
      for (const [b, tip] of tips.entries()) {
        memo.rows[b]?.push(rows[tip] as Float32Array)
        const token = pick(rows[tip] as Float32Array, b)
        ;(out[b] as number[]).push(token)
        if (step + 1 < length) {
          ids.push(token)
          parents.push(tip)
          tips[b] = ids.length - 1
        }
      }
    }
    return out
  }

  /** Forgets the cache (the model stays with its owner). */
  async close (): Promise<void> {
    this.#sequence = this.#model.newSession()
    this.#cached = []
    this.#lastRow = undefined
    this.#branches = undefined
  }

  /** Starts the memo of a continueBranches call: `tokens` fill in as the branches grow, rows as they arrive. */
  #rememberBranches (context: readonly number[], forks: BranchRequest['forks'], tokens: readonly number[][]): BranchMemo {
    this.#branches = { context: [...context], forks: [...forks], tokens, rows: forks.map(() => []) }
    return this.#branches
  }

  /** logits (V,) after `seq` when `seq` runs down a remembered branch and its row is there. */
  #branchRow (seq: readonly number[]): Float32Array | undefined {
    const memo = this.#branches
    if (memo === undefined) return undefined
    for (const [b, { at, token }] of memo.forks.entries()) {
      const rows = memo.rows[b] as Float32Array[]
      const i = seq.length - at - 1 // rows[i] follows the fork token and i continuation tokens
      if (i < 0 || i >= rows.length || seq[at] !== token) continue
      const tokens = memo.tokens[b] as number[]
      let same = true
      for (let j = 0; same && j < i; j++) same = seq[at + 1 + j] === tokens[j]
      for (let j = 0; same && j < at; j++) same = seq[j] === memo.context[j]
      if (same) return rows[i]
    }
    return undefined
  }

  /** logits (V,) for the token after `seq`, feeding only what the cache lacks. */
  async #nextRow (seq: readonly number[]): Promise<Float32Array> {
    let common = 0
    const limit = Math.min(seq.length, this.#cached.length)
    while (common < limit && seq[common] === this.#cached[common]) common++
    if (common === seq.length && common === this.#cached.length && this.#lastRow !== undefined) return this.#lastRow
    const start = Math.min(common, seq.length - 1) // always feed at least the last token for its row
    const rows = await this.#sequence.forward(seq.slice(start), start) // (T, V)
    this.#cached = [...seq]
    this.#lastRow = rows.at(-1)
    if (this.#lastRow === undefined) throw new Error(`Draft model returned no logits for ${seq.length - start} tokens`)
    return this.#lastRow
  }

  /** One draft token from the row (V,) that follows `seq`. */
  #pick (row: Float32Array, seq: readonly number[], sampler: Sampler): DraftToken {
    if (sampler.greedy) {
      const token = sampler.next(row, seq)
      return { token, q: undefined, ...greedyBeliefs(row, token, MAX_ALTERNATIVES) }
    }
    const { token, q } = sampledDraft(row, seq, sampler)
    // the runners-up are the verifier's next candidates here, so branches can carry them
    const alternatives: Alternative[] = keyedCandidates(q, token, sampler.seed, seq.length).map(c => ({ token: c, confidence: q[c] ?? 0 }))
    // a sampled draft is accepted with probability min(1, p/q) whichever token was drawn, so
    // q of the drawn token says little; how sure the draft is here says more (measured: the
    // adaptive modes 12-13% faster at temperature 0.8 than with q of the token)
    let top = 0
    for (let v = 0; v < q.length; v++) if ((q[v] as number) > top) top = q[v] as number
    return { token, q, confidence: top, alternatives }
  }
}

/** The sampled draft after `seq` from its logits row (V,): q (V,) and a draw from it keyed by position. */
function sampledDraft (row: Float32Array, seq: readonly number[], sampler: Sampler): { token: number, q: Float64Array } {
  const q = sampler.distribution(row, seq)
  return { token: keyedRandom(sampler.seed, seq.length, 'draft').sample(q), q }
}

/** One sequence of a draft model, position-addressed like LocalSequence: ids at positions -> logits (T,V). */
export interface DraftSequence {
  forward (ids: readonly number[], position?: number, parents?: readonly number[]): Promise<Float32Array[]>
  /** Rows at explicit positions under an explicit mask, all kept as scratch (WholeModelSequence); optional. */
  forwardMasked? (ids: readonly number[], positions: readonly number[], mask: Uint8Array): Promise<Float32Array[]>
  /** Cuts the cache back to this many rows; with forwardMasked. */
  truncate? (length: number): void
}

/** What a continueBranches call drafted: per branch, its tokens after the fork and the logits rows (V,) after the fork and each of them. */
interface BranchMemo {
  readonly context: readonly number[]
  readonly forks: BranchRequest['forks']
  readonly tokens: readonly number[][]
  readonly rows: Float32Array[][]
}

/** The first run of continueBranches: the trunk context[start..] and one row per fork; tips are the forks' rows. */
interface BranchTree {
  readonly start: number
  readonly ids: number[]
  readonly parents: number[]
  readonly tips: number[]
}

/** What a draft runs on: WholeModel or LocalModel. */
export interface DraftSequenceModel {
  newSession (): DraftSequence
}

/** A loaded draft model (loadDraftModel), to release when done. */
export interface DraftModel extends DraftSequenceModel {
  release (): Promise<void>
}

/**
 * Loads a draft checkpoint to run whole on the client, as one ORT session with the embedding
 * and head inside (model/whole-model.ts): a small draft's step costs what ORT spends per
 * session run, so one run per step instead of one per block and one for the head.
 */
export async function loadDraftModel (ckpt: Checkpoint): Promise<DraftModel> {
  return await WholeModel.load(ckpt)
}

/** Runners-up kept per greedy draft: the target's choice after a rejection is among the draft's top 4 most of the time. */
const MAX_ALTERNATIVES = 3

/**
 * The drafter's belief (softmax probability at temperature 1) in its greedy `pick` and in the
 * `count` likeliest other tokens, most likely first, straight from the logits row (V,): two
 * passes and no V-sized arrays (a float64 softmax of a 32K vocabulary was 512 KB of garbage
 * per drafted token).
 */
export function greedyBeliefs (row: Float32Array, pick: number, count: number): { confidence: number, alternatives: Alternative[] } {
  let max = -Infinity
  const best: number[] = [] // the runners-up so far, highest logit first (ties: lower token first)
  const bestLogits: number[] = []
  let floor = count > 0 ? -Infinity : Infinity // what a token must beat to be a runner-up
  for (let token = 0; token < row.length; token++) {
    const logit = row[token] as number
    if (logit > max) max = logit
    if (logit <= floor || token === pick) continue
    let at = best.length
    while (at > 0 && (bestLogits[at - 1] as number) < logit) at--
    best.splice(at, 0, token)
    bestLogits.splice(at, 0, logit)
    if (best.length > count) {
      best.pop()
      bestLogits.pop()
    }
    if (best.length === count) floor = bestLogits[count - 1] as number
  }
  let sum = 0 // the softmax's denominator: the exps are most of the time (~15 ns each here)
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - max)
  const belief = (token: number): number => Math.exp((row[token] as number) - max) / sum
  return { confidence: belief(pick), alternatives: best.map(token => ({ token, confidence: belief(token) })) }
}
