/**
 * Offline ceiling of speculative decoding for a target/draft pair: how many tokens one
 * speculation of a given shape decides (accepted draft path + the target's own token), with
 * no network and no timing. Over a slow link every scheme, sync or pipelined, decides per
 * round trip at most what the speculation sent from one decided root holds (a token is only
 * decided by a run sent at least a round trip earlier, from the root decided when it left),
 * so this bounds tokens per round trip. Greedy; the truth is the target's greedy text.
 *
 *   npm run bench:trees                        # stories260k + stories260k-draft, 96 tokens x 3 prompts
 *   npm run bench:trees -- --tokens 32 --stride 8
 *   npm run bench:trees -- --quick            # CI smoke run: 40 tokens of one prompt
 *
 * Shapes: `chain` is k greedy drafts (sync; a pipeline of chains sends the same chain, a run at
 * a time); `trunk+branches` is the client's tree (client/decoding: each run's runner-ups with
 * the best reach get a greedy continuation), over `runs` runs of k drafts; `best-first` spends
 * the same branch rows per run on the likeliest nodes one level of `width` at a time, each
 * expanded node offering its `children` likeliest tokens; `global` spends all runs' branch rows
 * best-first over the whole trunk (later runs hanging rows off earlier runs' positions);
 * `first-run` spends `firstRows` best-first on the first run's own positions and gives the later
 * runs the client's branches. None of the best-first shapes is in the client: measured through
 * the swarm they lost to the client's shape (scripts/MEASUREMENTS.md says why); here they say
 * how much a better tree shape could add.
 * Each shape is one JSON line: mean rows, tokens per round when decoding the prompts round
 * after round, and tokens decided from every position of the text taken as the root.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DraftModelDrafter, loadDraftModel, type DraftModel, type DraftSequence } from '../client/decoding/index.js'
import { pickBranches, type BranchCandidate } from '../client/decoding/token-branches.js'
import { argmax, Sampler } from '../client/sampling/index.js'
import { greedyBeliefs } from '../client/decoding/draft-model-drafter.js'
import { Checkpoint } from '../model/checkpoint.js'
import { emit } from './lib/bench-output.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: {
    target: { type: 'string', default: join(ROOT, 'models', 'stories260k') },
    draft: { type: 'string', default: join(ROOT, 'models', 'stories260k-draft') },
    tokens: { type: 'string' },
    stride: { type: 'string', default: '1' },
    quick: { type: 'boolean', default: false }
  }
})
const tokens = Number(args.tokens ?? (args.quick ? 40 : 96))
const stride = Number(args.stride)
if (!(Number.isInteger(tokens) && tokens >= 2 && Number.isInteger(stride) && stride >= 1)) throw new RangeError(`Cannot measure --tokens ${args.tokens} --stride ${args.stride}: both must be positive integers (tokens >= 2)`)

/** A speculation tree: node i continues node `parent` (-1: the last decided token, the root). */
interface TreeNode { readonly token: number, readonly parent: number }

interface TrunkShape { kind: 'chain' | 'trunk+branches' | 'best-first' | 'global' | 'first-run', k: number, runs: number, branches: number, branchLength: number, width?: number, children?: number, firstRows?: number }

const SHAPES: TrunkShape[] = [
  { kind: 'chain', k: 16, runs: 1, branches: 0, branchLength: 0 },
  { kind: 'chain', k: 64, runs: 1, branches: 0, branchLength: 0 },
  { kind: 'trunk+branches', k: 16, runs: 1, branches: 8, branchLength: 6 }, // sync-tree's SDK default
  { kind: 'best-first', k: 16, runs: 1, branches: 8, branchLength: 6, width: 4, children: 2 },
  { kind: 'trunk+branches', k: 4, runs: 4, branches: 8, branchLength: 6 }, // pipelined-tree's default, one round trip of runs
  { kind: 'best-first', k: 4, runs: 4, branches: 8, branchLength: 6, width: 4, children: 2 },
  { kind: 'trunk+branches', k: 4, runs: 8, branches: 8, branchLength: 6 },
  { kind: 'global', k: 4, runs: 4, branches: 8, branchLength: 6, width: 8, children: 2 },
  { kind: 'trunk+branches', k: 4, runs: 4, branches: 8, branchLength: 3 }, // the swept best at 20 ms
  { kind: 'first-run', k: 4, runs: 4, branches: 8, branchLength: 3, width: 16, children: 2, firstRows: 96 }
]

const target = await loadDraftModel(Checkpoint.open(args.target)) // run whole, like a draft
const draft = await loadDraftModel(Checkpoint.open(args.draft))
const sampler = new Sampler({ temperature: 0 })
const prompts = JSON.parse(readFileSync(join(args.target, 'reference.json'), 'utf8')).prompts as Array<{ prompt_ids: number[] }>
const texts = await greedyTexts(target, prompts.slice(0, args.quick ? 1 : prompts.length))

for (const shape of SHAPES) {
  let rows = 0
  let rounds = 0
  let decided = 0
  for (const { promptLength, ids } of texts) {
    for (let at = promptLength; at < ids.length;) {
      const tree = await speculate(shape, ids.slice(0, at))
      const d = Math.min(decidedAlong(tree, ids.slice(at)), ids.length - at)
      rows += tree.length
      rounds++
      decided += d
      at += d
    }
  }
  let rootDecided = 0
  let roots = 0
  for (const { promptLength, ids } of texts) {
    for (let at = promptLength; at < ids.length - 1; at += stride) {
      rootDecided += decidedAlong(await speculate(shape, ids.slice(0, at)), ids.slice(at))
      roots++
    }
  }
  const config = { ...shape, tokens, prompts: texts.length, rowsPerRound: rows / rounds, roots }
  emit({ metric: 'tokens_per_round', value: decided / rounds, unit: 'tokens', config })
  emit({ metric: 'decided_per_root', value: rootDecided / roots, unit: 'tokens', config })
}
await target.release()
await draft.release()

/** Each reference prompt and its greedy continuation of `tokens` tokens. */
async function greedyTexts (model: DraftModel, prompts: Array<{ prompt_ids: number[] }>): Promise<Array<{ promptLength: number, ids: number[] }>> {
  const out = []
  for (const { prompt_ids: prompt } of prompts) {
    const seq = model.newSession()
    const ids = [...prompt]
    let rows = await seq.forward(ids, 0)
    while (ids.length < prompt.length + tokens) {
      const next = argmax(rows.at(-1) as Float32Array)
      ids.push(next)
      rows = await seq.forward([next])
    }
    out.push({ promptLength: prompt.length, ids })
  }
  return out
}

/** Tokens one speculation decides: the target's text followed down the tree, plus the target's next token. */
function decidedAlong (tree: readonly TreeNode[], truth: readonly number[]): number {
  let at = -1
  let n = 0
  while (n < truth.length) {
    const next = tree.findIndex(x => x.parent === at && x.token === truth[n])
    if (next < 0) return n + 1
    at = next
    n++
  }
  return n
}

/** The speculation tree of `shape` after the decided `prefix`. */
async function speculate (shape: TrunkShape, prefix: readonly number[]): Promise<TreeNode[]> {
  const drafter = new DraftModelDrafter(draft) // a fresh cache: each root stands alone
  const drafts = await drafter.propose({ context: prefix, maxTokens: shape.k * shape.runs, sampler })
  const tree: TreeNode[] = drafts.map((d, i) => ({ token: d.token, parent: i - 1 }))
  if (shape.kind === 'chain') return tree
  const reach = [1]
  for (const d of drafts) reach.push((reach.at(-1) as number) * d.confidence)
  const seq = shape.kind === 'trunk+branches' ? undefined : await cachedPrefix(prefix)
  const forksIn = (from: number, end: number): Array<TreeNode & { score: number }> => {
    const out = [] // trunk node i is tree node i
    for (let i = from; i < Math.min(drafts.length, end); i++) {
      for (const alt of drafts[i]?.alternatives ?? []) out.push({ token: alt.token, parent: i - 1, score: (reach[i] as number) * alt.confidence })
    }
    return out
  }
  if (shape.kind === 'global' && seq !== undefined) {
    await growBestFirst(seq, prefix, tree, forksIn(0, drafts.length), shape.runs * shape.branches * (1 + shape.branchLength), shape.width ?? 8, shape.children ?? 2)
    return tree
  }
  for (let r = 0; r < shape.runs; r++) {
    // run r judges its drafts and the next run's first one; run 0 also judges its own first
    const from = r === 0 ? 0 : r * shape.k + 1
    const end = Math.min(drafts.length, (r + 1) * shape.k + 1)
    if (seq !== undefined && (shape.kind === 'best-first' || (shape.kind === 'first-run' && r === 0))) {
      const rows = shape.kind === 'first-run' ? shape.firstRows ?? 96 : shape.branches * (1 + shape.branchLength)
      await growBestFirst(seq, prefix, tree, forksIn(from, end), rows, shape.width ?? 4, shape.children ?? 2)
      continue
    }
    const candidates: BranchCandidate[] = forksIn(from, end).map(f => ({ row: f.parent + 1, token: f.token, score: f.score }))
    const picked = pickBranches(candidates, shape.branches, 0)
    const context = [...prefix, ...drafts.slice(0, Math.min(drafts.length, (r + 1) * shape.k)).map(d => d.token)]
    const continuations = await drafter.continueBranches({ context, forks: picked.map(c => ({ at: prefix.length + c.row, token: c.token })), length: shape.branchLength })
    for (const [b, c] of picked.entries()) {
      tree.push({ token: c.token, parent: c.row - 1 })
      for (const token of continuations[b] ?? []) tree.push({ token, parent: tree.length - 1 })
    }
  }
  return tree
}

/** A draft sequence whose cache holds prefix[0, n - 1): trees are fed from the last decided token. */
async function cachedPrefix (prefix: readonly number[]): Promise<DraftSequence> {
  const seq = draft.newSession()
  if (prefix.length > 1) await seq.forward(prefix.slice(0, -1), 0)
  return seq
}

/**
 * Adds `budget` nodes to `tree`, likeliest first: `width` of the best candidates at a time
 * (a candidate's score: its parent's times the draft's belief in it), each new node offering
 * its `children` likeliest tokens as candidates.
 */
async function growBestFirst (seq: DraftSequence, prefix: readonly number[], tree: TreeNode[], pool: Array<TreeNode & { score: number }>, budget: number, width: number, children: number): Promise<void> {
  const score = new Map<number, number>() // of the nodes this adds
  for (let added = 0; added < budget && pool.length > 0;) {
    pool.sort((a, b) => b.score - a.score)
    const level = pool.splice(0, Math.min(width, budget - added))
    const fresh = level.map(c => {
      tree.push({ token: c.token, parent: c.parent })
      score.set(tree.length - 1, c.score)
      return tree.length - 1
    })
    added += level.length
    if (added >= budget) break
    const rows = await seq.forward([prefix.at(-1) as number, ...tree.map(n => n.token)], prefix.length - 1, [-1, ...tree.map(n => n.parent + 1)])
    for (const node of fresh) {
      const row = rows[node + 1] as Float32Array
      const pick = argmax(row)
      const { confidence, alternatives } = greedyBeliefs(row, pick, children - 1)
      for (const c of [{ token: pick, confidence }, ...alternatives]) pool.push({ token: c.token, parent: node, score: (score.get(node) as number) * c.confidence })
    }
  }
}
