/**
 * Request bodies of OpenAI's `/v1/completions` and `/v1/chat/completions`, read into what
 * the SDK takes. Fields whose meaning Petal cannot honour (best_of > 1, tools) are refused by
 * name rather than silently ignored; fields that change nothing
 * (user, metadata) are ignored.
 */
import { MAX_TOP_LOGPROBS } from '../decoding/index.js'
import type { ChatMessage } from '../chat-template.js'
import type { GenerateOptions } from '../text-generation.js'
import { invalidField } from './api-error.js'

/** Options every request may carry. */
export interface ParsedRequest {
  /** The model the client asked for, if it named one. */
  model: string | undefined
  options: GenerateOptions
  stream: boolean
  /** stream_options.include_usage: a last chunk with the usage. */
  includeUsage: boolean
  /** Log-probabilities asked for, with this many alternatives per token; undefined: none. */
  logprobs: number | undefined
  /** Choices to generate for the prompt, each on a session of its own (1..MAX_CHOICES). */
  n: number
}

export interface ParsedCompletion extends ParsedRequest {
  /** Text (encoded with BOS, as the checkpoint asks) or token ids as they are. */
  prompt: string | number[]
  /** The prompt comes back before the completion (and its tokens' logprobs with them). */
  echo: boolean
}

export interface ParsedChat extends ParsedRequest {
  messages: ChatMessage[]
}

type Body = Record<string, unknown>

const MAX_STOP_STRINGS = 16
/** Most tokens one request's logit_bias may name (OpenAI's limit). */
const MAX_BIASED_TOKENS = 300
/** Most choices (`n`) one request may ask for: each holds a session while it runs. */
export const MAX_CHOICES = 8
const CHAT_ROLES = new Set(['system', 'user', 'assistant'])

export function parseCompletionBody (raw: unknown): ParsedCompletion {
  const body = asBody(raw)
  refuseUnless(body, 'suffix', v => v === '', 'suffix (insertion) is not supported')
  refuseUnless(body, 'best_of', v => v === 1, 'best_of must be 1')
  const echo = body['echo'] ?? false
  if (typeof echo !== 'boolean') throw invalidField('echo', 'echo must be true or false')
  // legacy completions: logprobs is the number of alternatives, null or absent for none
  const logprobs = body['logprobs'] == null ? undefined : integer('logprobs', body['logprobs'], 0, MAX_TOP_LOGPROBS)
  // max_tokens 0 with echo scores the prompt and generates nothing (evaluation harnesses do this)
  return { ...parseCommon(body, echo ? 0 : 1), logprobs, prompt: parsePrompt(body['prompt']), echo }
}

export function parseChatBody (raw: unknown): ParsedChat {
  const body = asBody(raw)
  for (const field of ['tools', 'functions']) refuseUnless(body, field, v => Array.isArray(v) && v.length === 0, `${field} (function calling) is not supported`)
  refuseUnless(body, 'tool_choice', v => v === 'none', 'tool_choice is not supported')
  refuseUnless(body, 'response_format', v => (v as Body)?.['type'] === 'text', 'response_format other than {"type": "text"} is not supported')
  const messages = body['messages']
  if (!Array.isArray(messages) || messages.length === 0) throw invalidField('messages', 'messages must be a non-empty array of {role, content}')
  // chat: logprobs is a switch, top_logprobs the number of alternatives (which needs the switch)
  const wanted = body['logprobs'] ?? false
  if (typeof wanted !== 'boolean') throw invalidField('logprobs', 'logprobs must be true or false')
  const top = body['top_logprobs'] == null ? undefined : integer('top_logprobs', body['top_logprobs'], 0, MAX_TOP_LOGPROBS)
  if (top !== undefined && !wanted) throw invalidField('top_logprobs', 'top_logprobs needs logprobs: true')
  return { ...parseCommon(body, 1), logprobs: wanted ? top ?? 0 : undefined, messages: messages.map((m, i) => parseMessage(m, i)) }
}

function asBody (raw: unknown): Body {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidField('body', 'The request body must be a JSON object')
  return raw as Body
}

/** Sampling, length (at least `minTokens`), stop strings and streaming: the fields both endpoints share. */
function parseCommon (body: Body, minTokens: number): Omit<ParsedRequest, 'logprobs'> {
  const n = body['n'] == null ? 1 : integer('n', body['n'], 1, MAX_CHOICES)
  const options: GenerateOptions = {}
  const maxTokens = body['max_completion_tokens'] ?? body['max_tokens']
  const maxParam = body['max_completion_tokens'] != null ? 'max_completion_tokens' : 'max_tokens'
  if (maxTokens != null) options.maxNewTokens = integer(maxParam, maxTokens, minTokens)
  if (body['temperature'] != null) options.temperature = number('temperature', body['temperature'], 0, 100)
  if (body['top_p'] != null) options.topP = number('top_p', body['top_p'], 0, 1)
  if (body['top_k'] != null) options.topK = integer('top_k', body['top_k'], 0)
  if (body['repetition_penalty'] != null) options.repetitionPenalty = number('repetition_penalty', body['repetition_penalty'], Number.MIN_VALUE, 100)
  if (body['seed'] != null) options.seed = integer('seed', body['seed'], 0, 2 ** 47 - 1)
  if (body['presence_penalty'] != null) options.presencePenalty = number('presence_penalty', body['presence_penalty'], -2, 2)
  if (body['frequency_penalty'] != null) options.frequencyPenalty = number('frequency_penalty', body['frequency_penalty'], -2, 2)
  const bias = parseLogitBias(body['logit_bias'])
  if (bias !== undefined) options.logitBias = bias
  const stop = parseStop(body['stop'])
  if (stop.length > 0) options.stopStrings = stop
  const model = body['model']
  if (model != null && typeof model !== 'string') throw invalidField('model', 'model must be a string')
  const stream = body['stream'] ?? false
  if (typeof stream !== 'boolean') throw invalidField('stream', 'stream must be true or false')
  const streamOptions = body['stream_options']
  const includeUsage = (streamOptions as Body | null | undefined)?.['include_usage'] ?? false
  if (typeof includeUsage !== 'boolean') throw invalidField('stream_options', 'stream_options.include_usage must be true or false')
  return { model: model ?? undefined, options, stream, includeUsage, n }
}

function parsePrompt (prompt: unknown): string | number[] {
  // a list of one prompt is the same request; OpenAI's batches of several are not supported
  const one = Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0])) ? prompt[0] : prompt
  if (typeof one === 'string') {
    if (one === '') throw invalidField('prompt', 'prompt is empty')
    return one
  }
  if (Array.isArray(one) && one.length > 0 && one.every(t => Number.isInteger(t) && t >= 0)) return one as number[]
  if (Array.isArray(one) && one.length > 1 && one.every(p => typeof p === 'string' || Array.isArray(p))) throw invalidField('prompt', 'prompt must be one prompt: batches of several are not supported')
  throw invalidField('prompt', 'prompt must be a non-empty string or a non-empty array of token ids')
}

function parseMessage (raw: unknown, i: number): ChatMessage {
  const m = raw as Body | null
  const role = m?.['role']
  if (typeof role !== 'string' || !CHAT_ROLES.has(role)) throw invalidField(`messages[${i}].role`, `messages[${i}].role must be one of ${[...CHAT_ROLES].join(', ')}: got ${JSON.stringify(role)}`)
  const content = m?.['content']
  if (typeof content === 'string') return { role, content }
  // content parts: text only
  if (Array.isArray(content) && content.every(p => (p as Body)?.['type'] === 'text' && typeof (p as Body)['text'] === 'string')) {
    return { role, content: content.map(p => (p as Body)['text'] as string).join('') }
  }
  throw invalidField(`messages[${i}].content`, `messages[${i}].content must be a string or a list of text parts (images and audio are not supported)`)
}

/** {"token id": bias in [-100, 100]}, at most MAX_BIASED_TOKENS of them; undefined when absent or empty. */
function parseLogitBias (raw: unknown): Record<number, number> | undefined {
  if (raw == null) return undefined
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidField('logit_bias', 'logit_bias must be an object of {"token id": bias}')
  const entries = Object.entries(raw as Body)
  if (entries.length > MAX_BIASED_TOKENS) throw invalidField('logit_bias', `logit_bias may bias at most ${MAX_BIASED_TOKENS} tokens: got ${entries.length}`)
  if (entries.length === 0) return undefined
  const bias: Record<number, number> = {}
  for (const [key, value] of entries) {
    if (!/^\d+$/.test(key)) throw invalidField('logit_bias', `logit_bias keys are token ids: got ${JSON.stringify(key)}`)
    bias[Number(key)] = number('logit_bias', value, -100, 100)
  }
  return bias
}

function parseStop (stop: unknown): string[] {
  if (stop == null) return []
  const list = typeof stop === 'string' ? [stop] : stop
  if (!Array.isArray(list) || !list.every(s => typeof s === 'string' && s !== '')) throw invalidField('stop', 'stop must be a non-empty string or a list of them')
  if (list.length > MAX_STOP_STRINGS) throw invalidField('stop', `stop may hold at most ${MAX_STOP_STRINGS} strings: got ${list.length}`)
  return list as string[]
}

/** Refuses a present, non-null field unless `allowed` says its value changes nothing. */
function refuseUnless (body: Body, field: string, allowed: (value: unknown) => boolean, message: string): void {
  const value = body[field]
  if (value != null && !allowed(value)) throw invalidField(field, message, 'unsupported_parameter')
}

function number (param: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) throw invalidField(param, `${param} must be a number in [${min === Number.MIN_VALUE ? '>0' : min}, ${max}]: got ${JSON.stringify(value)}`)
  return value
}

function integer (param: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) throw invalidField(param, `${param} must be an integer ${range}: got ${JSON.stringify(value)}`)
  return value as number
}
