/**
 * The response bodies of both endpoints, whole and streamed (server-sent events), in OpenAI's
 * shapes. One `petal` field is added: the route the generation took and its speed.
 */
import type { StopReason } from '../sampling/index.js'
import type { GenerationResult } from '../text-generation.js'

export type Endpoint = 'completion' | 'chat'

/** What every body of one response repeats. */
export interface ResponseHead {
  id: string
  created: number
  model: string
  endpoint: Endpoint
}

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  /** cached_tokens: prompt tokens the servers' caches already held (sent again: the rest). */
  prompt_tokens_details: { cached_tokens: number }
}

/** OpenAI's finish reasons: "length" when the token budget ended it, else "stop". */
export function finishReason (reason: StopReason): 'stop' | 'length' {
  return reason === 'max-new-tokens' ? 'length' : 'stop'
}

/**
 * `promptLength`: the request's whole sequence, counted once however many choices; each
 * result's `promptTokens`: the part its session sent. Cached tokens are the first choice's
 * (the session a conversation continues on).
 */
export function usageOf (promptLength: number, results: readonly GenerationResult[]): Usage {
  const completion = results.reduce((sum, r) => sum + r.tokens.length, 0)
  return {
    prompt_tokens: promptLength,
    completion_tokens: completion,
    total_tokens: promptLength + completion,
    prompt_tokens_details: { cached_tokens: promptLength - (results[0]?.promptTokens.length ?? promptLength) }
  }
}

/** Petal's own account of a generation, beside OpenAI's fields. */
export function petalStats (result: GenerationResult): Record<string, unknown> {
  const s = result.stats
  return {
    route: s.target.route,
    tokens_per_second: round(s.tokensPerSecond),
    ttft_ms: round(s.ttftMs),
    failovers: s.target.failovers,
    ...(s.target.quantizedHops !== undefined ? { quantized_hops: s.target.quantizedHops } : {}),
    ...(s.decode !== undefined && s.decode.verified > 0 ? { acceptance: round(s.decode.acceptanceRate) } : {})
  }
}

/** One choice of a whole response: its result, the `text` it shows (the prompt first with echo) and its `logprobs` (null unless asked for). */
export interface ShownChoice {
  result: GenerationResult
  text: string
  logprobs: unknown
}

/** The whole response of a request without `stream`; `petal` describes the first choice's generation. */
export function completeBody (head: ResponseHead, choices: readonly ShownChoice[], promptLength: number): Record<string, unknown> {
  const bodies = choices.map(({ result, text, logprobs }, index) => {
    const finish = finishReason(result.stopReason)
    return head.endpoint === 'chat'
      ? { index, message: { role: 'assistant', content: text }, logprobs, finish_reason: finish }
      : { index, text, logprobs, finish_reason: finish }
  })
  const results = choices.map(c => c.result)
  return { ...headFields(head, false), choices: bodies, usage: usageOf(promptLength, results), petal: petalStats(results[0] as GenerationResult) }
}

/** One streamed chunk of choice `index`'s text (`first`: a chat stream's first chunk of a choice also names the role). */
export function textChunk (head: ResponseHead, index: number, text: string, first: boolean, logprobs: unknown = null): Record<string, unknown> {
  const choice = head.endpoint === 'chat'
    ? { index, delta: first ? { role: 'assistant', content: text } : { content: text }, logprobs, finish_reason: null }
    : { index, text, logprobs, finish_reason: null }
  return { ...headFields(head, true), choices: [choice] }
}

/** A choice's last chunk: no text, the finish reason and Petal's stats. */
export function finishChunk (head: ResponseHead, index: number, result: GenerationResult): Record<string, unknown> {
  const finish = finishReason(result.stopReason)
  const choice = head.endpoint === 'chat'
    ? { index, delta: {}, logprobs: null, finish_reason: finish }
    : { index, text: '', logprobs: null, finish_reason: finish }
  return { ...headFields(head, true), choices: [choice], petal: petalStats(result) }
}

/** stream_options.include_usage: a chunk with no choices and the usage, after every choice's finish. */
export function usageChunk (head: ResponseHead, results: readonly GenerationResult[], promptLength: number): Record<string, unknown> {
  return { ...headFields(head, true), choices: [], usage: usageOf(promptLength, results) }
}

function headFields (head: ResponseHead, chunk: boolean): Record<string, unknown> {
  const object = head.endpoint === 'chat' ? (chunk ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion'
  return { id: head.id, object, created: head.created, model: head.model }
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}
