/**
 * One completion request once it holds its sessions: each of its `n` choices generates on a
 * session of its own (the servers batch them), and the response goes out whole or as
 * server-sent events. A long prompt is computed once, on the first choice's session; the
 * others copy its caches (ChatSession.adopt). Echo and scoring (max_tokens 0) put the prompt, and with logprobs its
 * tokens' scores, before each choice's completion.
 */
import type { ServerResponse } from 'node:http'
import type { TokenLogprob } from '../decoding/index.js'
import type { ChatSession } from '../language-model.js'
import { sharedPromptGenerations } from '../shared-prompt.js'
import { drainGeneration, type GenerateChunk, type GenerateOptions, type GenerationResult } from '../text-generation.js'
import type { Tokenizer, TokenPieces } from '../tokenizer/index.js'
import { completeBody, finishChunk, textChunk, usageChunk, type ResponseHead } from './completion-responses.js'
import { LogprobRenderer } from './logprob-renderer.js'
import type { ParsedChat, ParsedCompletion } from './request-body.js'

export interface CompletionRequest {
  res: ServerResponse
  head: ResponseHead
  request: ParsedCompletion | ParsedChat
  /** The prompt's (or the rendered conversation's) token ids. */
  ids: readonly number[]
  /** One per choice; the first is the one the pool matched to the conversation. */
  sessions: readonly ChatSession[]
  tokenizer: Tokenizer
  pieces: TokenPieces
  /** Options every generation starts from; the request's fields override them. */
  defaults: GenerateOptions | undefined
  /** Aborts every choice (the client went away). */
  signal: AbortSignal
  /** Compute the prompt once for all choices (default true; false: each choice's session sends it, as before adoption). */
  sharePrompt?: boolean
}

/** A choice's echoed prompt: its text, tokens and their logprobs (entries[i] for ids[i]). */
interface Echo {
  text: string
  ids: readonly number[]
  entries: ReadonlyArray<TokenLogprob | undefined>
}

interface Choice {
  index: number
  stream: AsyncGenerator<GenerateChunk, GenerationResult>
  /** Set when logprobs were asked for: renders this choice's, offsets and all. */
  renderer: LogprobRenderer | undefined
}

/** Generates every choice and sends the response; returns the choices' results in order. */
export async function respond (req: CompletionRequest): Promise<GenerationResult[]> {
  const { request, ids, sessions, tokenizer, pieces } = req
  const top = request.logprobs
  const echoed = 'echo' in request && request.echo
  const scoreOnly = request.options.maxNewTokens === 0 // only with echo (request-body.ts)
  const first = sessions[0] as ChatSession
  // echo with logprobs, or max_tokens 0, scores the prompt once, on the first choice's session
  const entries = scoreOnly || (echoed && top !== undefined) ? await first.score(ids, { top: top ?? 0 }) : []
  const echo: Echo | undefined = echoed ? { text: tokenizer.decode(ids, { skipSpecialTokens: true }), ids, entries } : undefined
  // n choices: the first computes the prompt, the others copy it from its caches once it has
  const lacking = Math.max(0, ...sessions.slice(1).map(s => ids.length - 1 - s.heldPrefix(ids)))
  const share = !scoreOnly && req.sharePrompt !== false && lacking >= MIN_SHARED_TOKENS
  // a choice that fails stops the others
  const stop = new AbortController()
  const onAbort = (): void => { stop.abort(req.signal.reason) }
  req.signal.addEventListener('abort', onAbort, { once: true })
  if (req.signal.aborted) onAbort() // the client left while the prompt was scored
  try {
    const shared = share ? sharedPromptGenerations(sessions, ids, index => choiceOptions(req, index, stop.signal)) : []
    const choices: Choice[] = sessions.map((session, index) => ({
      index,
      stream: scoreOnly
        ? promptOnly(session, ids)
        : shared[index] ?? session.continueWith(ids, choiceOptions(req, index, stop.signal)),
      renderer: top === undefined ? undefined : new LogprobRenderer(req.head.endpoint, tokenizer, pieces, echo !== undefined ? [] : ids)
    }))
    if (request.stream) return await streamChoices(req, choices, echo, stop)
    const results = await allOrAbort(choices.map(async c => await drainGeneration(c.stream)), stop)
    const shown = choices.map((c, i) => {
      const result = results[i] as GenerationResult
      const shownIds = [...(echo?.ids ?? []), ...result.tokens]
      const logprobs = c.renderer?.render(shownIds, [...(echo?.entries ?? []), ...(result.logprobs ?? [])]) ?? null
      return { result, text: (echo?.text ?? '') + result.text, logprobs }
    })
    sendJson(req.res, 200, completeBody(req.head, shown, ids.length))
    return results
  } finally {
    req.signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Choice `index`'s options: the defaults, the request's fields, logprobs when asked for. With a
 * seed, choice i samples with seed + i, so choices differ and a request repeats.
 */
function choiceOptions (req: CompletionRequest, index: number, signal: AbortSignal): GenerateOptions {
  const { options, logprobs } = req.request
  return {
    ...req.defaults,
    ...options,
    ...(options.seed !== undefined ? { seed: options.seed + index } : {}),
    ...(logprobs !== undefined ? { logprobs } : {}),
    signal
  }
}

/**
 * Streams every choice as server-sent events as its chunks come (an echoed prompt first), each
 * choice ending with its finish chunk; then the usage if asked for, and `data: [DONE]`.
 */
async function streamChoices (req: CompletionRequest, choices: readonly Choice[], echo: Echo | undefined, stop: AbortController): Promise<GenerationResult[]> {
  const { res, head } = req
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
  const send = (body: unknown): void => { res.write(`data: ${JSON.stringify(body)}\n\n`) }
  const streamOne = async ({ index, stream, renderer }: Choice): Promise<GenerationResult> => {
    let first = true
    if (echo !== undefined) {
      send(textChunk(head, index, echo.text, true, renderer?.render(echo.ids, echo.entries) ?? null))
      first = false
    }
    for (;;) {
      const next = await stream.next()
      if (next.done === true) {
        if (first && head.endpoint === 'chat') send(textChunk(head, index, '', true))
        send(finishChunk(head, index, next.value))
        return next.value
      }
      const { text, tokens, logprobs } = next.value
      if (text === '' && !first && (renderer === undefined || tokens.length === 0)) continue
      send(textChunk(head, index, text, first, renderer?.render(tokens, logprobs ?? []) ?? null))
      first = false
    }
  }
  const results = await allOrAbort(choices.map(streamOne), stop)
  if (req.request.includeUsage) send(usageChunk(head, results, req.ids.length))
  res.end('data: [DONE]\n\n')
  return results
}

/**
 * Waits for every task; the first failure aborts the others (`stop`) and is thrown once they
 * have all ended, so no choice still runs on its session when the sessions go back.
 */
async function allOrAbort<T> (tasks: ReadonlyArray<Promise<T>>, stop: AbortController): Promise<T[]> {
  let failure: { reason: unknown } | undefined
  const settled = await Promise.allSettled(tasks.map(async task => {
    try {
      return await task
    } catch (err) {
      failure ??= { reason: err }
      stop.abort(err)
      throw err
    }
  }))
  if (failure !== undefined) throw failure.reason
  return settled.map(s => (s as PromiseFulfilledResult<T>).value)
}

/** A generation of no tokens (max_tokens 0, after the prompt was scored): the result only. */
async function * promptOnly (session: ChatSession, ids: readonly number[]): AsyncGenerator<GenerateChunk, GenerationResult> {
  return { text: '', tokens: [], promptTokens: [...ids], logprobs: [], stopReason: 'max-new-tokens', stats: { tokensPerSecond: 0, ttftMs: 0, elapsedMs: 0, target: session.target.stats() } }
}

/**
 * Prompt tokens worth copying from another session rather than computing: below this many, a
 * choice's session computes them with its first token (one run) rather than wait for the first
 * choice's run and then a copy, and a new conversation does not copy its system prompt from
 * an idle session (bench:api's "shared" and "system" parts measure both ways).
 */
export const MIN_SHARED_TOKENS = 32

export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
