import type { Sampler } from '../sampling/index.js'
import type { TargetModel } from '../target-model.js'
import { MAX_TREE_ROWS } from '../../model/token-tree.js'
import { ChainDecoder, MAX_TRUNK_WITH_BRANCHES } from './chain-decoder.js'
import type { DecodeMode, DecodeStats } from './decode-stats.js'
import type { Drafter } from './drafter.js'
import type { SpeculationMemory } from './speculation-memory.js'
import type { LogprobLog } from './token-logprobs.js'

/** Default most draft tokens per run, by mode (see DecodeOptions.k). */
export const DEFAULT_K = { none: 1, sync: 16, pipelined: 4 } as const satisfies Record<DecodeMode, number>

/** What to decode and how. */
export interface DecodeOptions {
  /** Prompt token ids, fed from the end of `contextIds`. */
  promptIds: readonly number[]
  /**
   * Tokens already in the target's caches at positions [0, n) (a chat session's history):
   * not sent again, but seen by the drafter and the repetition penalty. Default none.
   */
  contextIds?: readonly number[]
  /** Greedy (temperature 0) or sampling settings and seed. */
  sampler: Sampler
  /** Generate exactly this many tokens unless EOS comes first. */
  maxNewTokens: number
  /** Any of these ends the output (it is yielded, nothing after it). */
  eosTokenIds: Iterable<number>
  /** none: one token per run; sync: draft k, verify, repeat; pipelined: PipeInfer. */
  mode: DecodeMode
  /** Required for sync and pipelined. */
  drafter?: Drafter
  /**
   * Most draft tokens per run. Default DEFAULT_K[mode]: sync verifies one run per round trip, so
   * it may send long runs (the adaptive controller shortens them when acceptance is poor);
   * pipelined spreads the same window over several runs in flight.
   */
  k?: number
  /** Most runs in flight in pipelined mode. Default 4. */
  maxInFlight?: number
  /**
   * Tree speculation (with a drafter that can branch, e.g. a draft model; greedy or sampling):
   * most branches per run, hung off the least certain drafts; the adaptive controller sends
   * only those likely enough to pay. Default 8; 0 sends chains only.
   */
  branches?: number
  /** Draft tokens after each branch's first token. Default 4. */
  branchLength?: number
  /** Adapt k, depth and the confidence cutoff to acceptance and timing. Default true. */
  adaptive?: boolean
  /** Aborting stops decoding: the generator throws `signal.reason`. */
  signal?: AbortSignal
  /**
   * Where speculation starts from what earlier decodes with the same drafter learned, and
   * leaves what this one learns (LanguageModel passes its own). Default: start from priors.
   */
  memory?: SpeculationMemory
  /**
   * Record the log-probability of every generated token (and of the prompt tokens the target
   * computes a row before) in this log, with its `top` likeliest alternatives (newLogprobLog).
   */
  logprobs?: LogprobLog
}

/**
 * Generates tokens after `promptIds` on `target`, yielding each batch of newly decided ids in
 * order; the generator's return value is the DecodeStats. Greedy output is the same token for
 * token in every mode; sampled output follows the target's distribution in every mode, and one
 * seed gives one text in sync and pipelined mode whatever the timing. Whenever decoding ends
 * (EOS, maxNewTokens, abort, an error, or the consumer stopping early) every run still in
 * flight is cancelled.
 */
export async function * decode (target: TargetModel, opts: DecodeOptions): AsyncGenerator<number[], DecodeStats> {
  const { promptIds, contextIds = [], sampler, maxNewTokens, mode, drafter, k = DEFAULT_K[opts.mode] ?? 4, maxInFlight = 4, branches = 8, branchLength = 4, adaptive = true, signal, memory, logprobs } = opts
  if (promptIds.length + contextIds.length === 0) throw new RangeError('Cannot decode from an empty prompt: it needs at least one token')
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 1)) throw new RangeError(`Cannot decode max_new_tokens ${maxNewTokens}: it must be an integer >= 1`)
  if (!(Number.isInteger(k) && k >= 1)) throw new RangeError(`Cannot draft k = ${k} tokens per run: it must be an integer >= 1`)
  if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1)) throw new RangeError(`Cannot keep ${maxInFlight} runs in flight: it must be an integer >= 1`)
  if (!(Number.isInteger(branches) && branches >= 0)) throw new RangeError(`Cannot hang ${branches} branches on a run: it must be an integer >= 0`)
  if (!(Number.isInteger(branchLength) && branchLength >= 0)) throw new RangeError(`Cannot draft branches of ${branchLength} tokens: it must be an integer >= 0`)
  const branchRows = branches * (1 + branchLength)
  if (branchRows > MAX_TREE_ROWS - MAX_TRUNK_WITH_BRANCHES) {
    throw new RangeError(`Cannot hang ${branches} branches of ${branchLength} tokens on a run: ${branchRows} rows, and at most ${MAX_TREE_ROWS - MAX_TRUNK_WITH_BRANCHES} fit beside a trunk in a tree run`)
  }
  if (mode !== 'none' && mode !== 'sync' && mode !== 'pipelined') throw new RangeError(`Cannot decode in mode ${String(mode)}: it must be none, sync or pipelined`)
  if (mode !== 'none' && drafter === undefined) throw new TypeError(`Cannot decode in mode ${mode} without a drafter`)
  const decoder = new ChainDecoder(target, {
    contextIds, promptIds, sampler, maxNewTokens, eosTokenIds: new Set(opts.eosTokenIds), mode, drafter, k, maxInFlight, branches, branchLength, adaptive, signal, logprobs,
    learned: drafter !== undefined ? memory?.recall(drafter, mode, sampler.greedy) : undefined
  })
  try {
    return yield * decoder.steps()
  } finally {
    decoder.cancelAll()
    const learned = decoder.learned() // undefined in mode none
    if (memory !== undefined && drafter !== undefined && learned !== undefined) memory.remember(drafter, mode, sampler.greedy, learned)
  }
}

/** Runs `decode` to the end: all new token ids and the stats. */
export async function decodeAll (target: TargetModel, opts: DecodeOptions): Promise<{ tokens: number[], stats: DecodeStats }> {
  const gen = decode(target, opts)
  const tokens: number[] = []
  for (;;) {
    const step = await gen.next()
    if (step.done === true) return { tokens, stats: step.value }
    tokens.push(...step.value)
  }
}
