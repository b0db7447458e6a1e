import type { Drafter } from './decoding/index.js'
import { decode, newLogprobLog, type DecodeStats, type SpeculationMemory, type TokenLogprob } from './decoding/index.js'
import type { GenerationConfig } from './generation-config.js'
import { Sampler, StopCondition, type StopReason } from './sampling/index.js'
import type { ServerRunCounts, TargetModel, TargetStats } from './target-model.js'
import { IncrementalDecoder, type Tokenizer } from './tokenizer/index.js'

export type SpeculationMode = 'none' | 'sync' | 'pipelined'

/** Options of one generation; unset sampling options come from the checkpoint's generation_config.json. */
export interface GenerateOptions {
  maxNewTokens?: number
  /** 0 is greedy. */
  temperature?: number
  topK?: number
  topP?: number
  repetitionPenalty?: number
  /**
   * OpenAI's presence and frequency penalties: each token this generation has produced loses
   * `presencePenalty` from its logit once and `frequencyPenalty` per time it was produced
   * (after the repetition penalty, before logit bias). Default 0 (off).
   */
  presencePenalty?: number
  frequencyPenalty?: number
  /** Added to these tokens' logits before sampling (OpenAI's logit_bias): -100 bans a token. */
  logitBias?: Readonly<Record<number, number>>
  seed?: number
  /** Generation ends before the first of these in the text. */
  stopStrings?: string[]
  /** Stop at the checkpoint's EOS ids (default true). */
  stopAtEos?: boolean
  speculation?: SpeculationMode
  drafter?: Drafter
  /** Most draft tokens per speculative run (default 16 in sync mode, 4 pipelined). */
  k?: number
  /** Speculative runs in flight at once (pipelined). */
  maxInFlight?: number
  /** Tree speculation (a draft model, greedy or sampling): most branches per run; 0 turns it off. */
  branches?: number
  /** Draft tokens after each branch's first token. */
  branchLength?: number
  /**
   * Report each token's log-probability with this many likeliest alternatives (0..20): the
   * model's own distribution, before temperature, top-k/top-p and penalties. Default: none.
   */
  logprobs?: number
  signal?: AbortSignal
}

/** A piece of streamed output: printable text and the token ids it came from. */
export interface GenerateChunk {
  readonly text: string
  readonly tokens: readonly number[]
  /** With GenerateOptions.logprobs: one entry per token of `tokens`. */
  readonly logprobs?: readonly TokenLogprob[]
}

export interface GenerationResult {
  text: string
  /** Ids of the generated tokens (a stop string's tokens included, its text not). */
  tokens: number[]
  promptTokens: number[]
  /** With GenerateOptions.logprobs: one entry per token of `tokens`. */
  logprobs?: TokenLogprob[]
  /**
   * With GenerateOptions.logprobs: by index into `promptTokens`, every token's entry but the
   * first's (no row before it was computed here).
   */
  promptLogprobs?: Array<TokenLogprob | undefined>
  stopReason: StopReason
  stats: GenerationStats
}

export interface GenerationStats {
  /** Generated tokens over the time from the call to the last token, prefill included. */
  tokensPerSecond: number
  /** From the call to the first generated token, ms. */
  ttftMs: number
  elapsedMs: number
  /** The decoder's own account (acceptance, runs, inter-token latencies); absent when a stop string ended it early. */
  decode?: DecodeStats
  /** The target's counters: runs sent and cancelled, failovers, route. */
  target: TargetStats
  /** Server-side counts of runs computed and cancelled, by peer id (swarm only). */
  serverRuns?: Record<string, ServerRunCounts>
}

/** Where a generation starts: nothing cached (a new sequence), or a chat session's cache. */
export interface SequenceState {
  /** Tokens already in the target's caches at positions [0, n). */
  readonly cachedTokens: readonly number[]
  /** What speculation learned in earlier generations of the model (DecodeOptions.memory). */
  readonly speculationMemory?: SpeculationMemory
}

/** Runs a generation to its end, its chunks unread; returns its result. */
export async function drainGeneration (stream: AsyncGenerator<unknown, GenerationResult>): Promise<GenerationResult> {
  for (;;) {
    const next = await stream.next()
    if (next.done === true) return next.value
  }
}

/**
 * Text in, text chunks out: tokenizes the prompt, runs a decoding strategy over the target
 * model, streams text that never splits a character, and applies stop strings.
 */
export async function * generateText (
  target: TargetModel, tokenizer: Tokenizer, genConfig: GenerationConfig, promptIds: readonly number[],
  opts: GenerateOptions, state: SequenceState = { cachedTokens: [] }
): AsyncGenerator<GenerateChunk, GenerationResult> {
  const sampler = new Sampler({
    temperature: opts.temperature ?? (genConfig.doSample ? genConfig.temperature : 0),
    topK: opts.topK ?? (genConfig.doSample ? genConfig.topK : 0),
    topP: opts.topP ?? (genConfig.doSample ? genConfig.topP : 1),
    repetitionPenalty: opts.repetitionPenalty ?? genConfig.repetitionPenalty,
    presencePenalty: opts.presencePenalty ?? 0,
    frequencyPenalty: opts.frequencyPenalty ?? 0,
    generatedFrom: state.cachedTokens.length + promptIds.length, // the decoder's sequences start at position 0
    ...(opts.logitBias !== undefined ? { logitBias: new Map(Object.entries(opts.logitBias).map(([id, bias]) => [Number(id), bias])) } : {}),
    ...(opts.seed !== undefined ? { seed: opts.seed } : {})
  })
  const maxNewTokens = opts.maxNewTokens ?? genConfig.maxNewTokens ?? Math.max(1, genConfig.maxLength - promptIds.length)
  const eosTokenIds = opts.stopAtEos === false ? [] : genConfig.eosTokenIds
  const stop = new StopCondition({ eosTokenIds, maxNewTokens, ...(opts.stopStrings !== undefined ? { stopStrings: opts.stopStrings } : {}) })
  const text = new IncrementalDecoder(tokenizer, { context: [...state.cachedTokens, ...promptIds] })
  const tokens: number[] = []
  let full = ''
  let shown = 0
  // set when a stop string cuts the text, else from the decoder's own end (an abort throws)
  let stopReason: StopReason | undefined
  const log = opts.logprobs !== undefined ? newLogprobLog(opts.logprobs) : undefined
  const started = performance.now()
  let firstAt: number | undefined
  let lastAt = started

  const steps = decode(target, {
    promptIds,
    contextIds: state.cachedTokens,
    sampler,
    maxNewTokens,
    eosTokenIds,
    mode: opts.speculation ?? 'none',
    ...(opts.drafter !== undefined ? { drafter: opts.drafter } : {}),
    ...(opts.k !== undefined ? { k: opts.k } : {}),
    ...(opts.maxInFlight !== undefined ? { maxInFlight: opts.maxInFlight } : {}),
    ...(opts.branches !== undefined ? { branches: opts.branches } : {}),
    ...(opts.branchLength !== undefined ? { branchLength: opts.branchLength } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    ...(state.speculationMemory !== undefined ? { memory: state.speculationMemory } : {}),
    ...(log !== undefined ? { logprobs: log } : {})
  })
  let step = await steps.next()
  try {
    while (step.done !== true) {
      const batch = step.value
      const before = tokens.length
      lastAt = performance.now()
      firstAt ??= lastAt
      for (const id of batch) {
        tokens.push(id)
        full += text.push(id)
        const verdict = stop.check(tokens, full)
        // EOS and the token budget end the decoder by themselves (and it returns its stats)
        if (verdict.stop && verdict.reason === 'stop-string') {
          stopReason = verdict.reason as StopReason
          full = full.slice(0, verdict.textLength)
          break
        }
      }
      const visible = stopReason === undefined ? stop.check(tokens, full).textLength : full.length
      if (visible > shown || tokens.length > before) {
        yield {
          text: full.slice(shown, Math.max(shown, visible)),
          tokens: tokens.slice(before),
          ...(log !== undefined ? { logprobs: log.generated.slice(before, tokens.length) } : {})
        }
        shown = Math.max(shown, visible)
      }
      if (stopReason !== undefined) break
      step = await steps.next()
    }
    if (step.done === true) stopReason = step.value.stopReason
  } finally {
    if (step.done !== true) step = await steps.return(undefined as never)
  }
  // the loop ends only by a stop string or by the decoder's return, which both set it
  if (stopReason === undefined) throw new Error('Generation ended without a stop reason')
  if (stopReason !== 'stop-string') {
    full += text.flush()
    if (full.length > shown) yield { text: full.slice(shown), tokens: [], ...(log !== undefined ? { logprobs: [] } : {}) }
  }
  const elapsedMs = lastAt - started
  const stats: GenerationStats = {
    tokensPerSecond: elapsedMs > 0 ? tokens.length / (elapsedMs / 1000) : 0,
    ttftMs: (firstAt ?? lastAt) - started,
    elapsedMs,
    ...(step.done === true && step.value !== undefined ? { decode: step.value } : {}),
    target: target.stats(),
    ...(target.serverCounters !== undefined ? { serverRuns: await target.serverCounters() } : {})
  }
  const logprobs = log !== undefined ? { logprobs: log.generated.slice(0, tokens.length), promptLogprobs: promptIds.map((_, i) => log.prompt[i]) } : {}
  return { text: full, tokens, promptTokens: [...promptIds], ...logprobs, stopReason, stats }
}
