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

/** `promptLength`: the request's whole sequence; `result.promptTokens`: the part that was sent. */
export function usageOf (promptLength: number, result: GenerationResult): Usage {
  return {
    prompt_tokens: promptLength,
    completion_tokens: result.tokens.length,
    total_tokens: promptLength + result.tokens.length,
    prompt_tokens_details: { cached_tokens: promptLength - result.promptTokens.length }
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

/**
 * The whole response of a request without `stream`: the choice shows `text` (the completion,
 * after the prompt with echo) and `logprobs` (null unless asked for).
 */
export function completeBody (head: ResponseHead, result: GenerationResult, promptLength: number, text = result.text, logprobs: unknown = null): Record<string, unknown> {
  const finish = finishReason(result.stopReason)
  const choice = head.endpoint === 'chat'
    ? { index: 0, message: { role: 'assistant', content: text }, logprobs, finish_reason: finish }
    : { index: 0, text, logprobs, finish_reason: finish }
  return { ...headFields(head, false), choices: [choice], usage: usageOf(promptLength, result), petal: petalStats(result) }
}

/** One streamed chunk of text (`first`: a chat stream's first chunk also names the role). */
export function textChunk (head: ResponseHead, text: string, first: boolean, logprobs: unknown = null): Record<string, unknown> {
  const choice = head.endpoint === 'chat'
    ? { index: 0, delta: first ? { role: 'assistant', content: text } : { content: text }, logprobs, finish_reason: null }
    : { index: 0, text, logprobs, finish_reason: null }
  return { ...headFields(head, true), choices: [choice] }
}

/** The stream's last chunk with a choice: no text, the finish reason and Petal's stats. */
export function finishChunk (head: ResponseHead, result: GenerationResult): Record<string, unknown> {
  const finish = finishReason(result.stopReason)
  const choice = head.endpoint === 'chat'
    ? { index: 0, delta: {}, logprobs: null, finish_reason: finish }
    : { index: 0, text: '', logprobs: null, finish_reason: finish }
  return { ...headFields(head, true), choices: [choice], petal: petalStats(result) }
}

/** stream_options.include_usage: a chunk with no choices and the usage, after the finish. */
export function usageChunk (head: ResponseHead, result: GenerationResult, promptLength: number): Record<string, unknown> {
  return { ...headFields(head, true), choices: [], usage: usageOf(promptLength, result) }
}

function headFields (head: ResponseHead, chunk: boolean): Record<string, unknown> {
  const object = head.endpoint === 'chat' ? (chunk ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion'
  return { id: head.id, object, created: head.created, model: head.model }
}

function round (x: number): number {
  return Math.round(x * 1000) / 1000
}
