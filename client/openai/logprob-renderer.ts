/**
 * The `logprobs` field of a choice, in the two shapes OpenAI uses: chat's list of tokens with
 * their alternatives, and legacy completions' parallel lists (tokens, token_logprobs,
 * top_logprobs as {token: logprob}, text_offset). Tokens are shown as the text they add
 * (TokenPieces); an entry may be missing for a prompt's first token, which gets nulls.
 */
import type { TokenLogprob } from '../decoding/index.js'
import { IncrementalDecoder, type Tokenizer, type TokenPieces } from '../tokenizer/index.js'
import type { Endpoint } from './completion-responses.js'

export interface ChatLogprobs {
  content: Array<ChatTokenLogprob & { top_logprobs: ChatTokenLogprob[] }>
  refusal: null
}

interface ChatTokenLogprob {
  token: string
  logprob: number
  bytes: number[] | null
}

export interface CompletionLogprobs {
  tokens: string[]
  token_logprobs: Array<number | null>
  top_logprobs: Array<Record<string, number> | null>
  /** Where each token's text starts in the choice's text (with echo, the prompt's included). */
  text_offset: number[]
}

/**
 * Renders one request's logprobs, chunk after chunk, in its endpoint's shape. Completions'
 * text offsets follow the text as the stream shows it: an incremental decode of the tokens
 * rendered so far, after `context` (the prompt, unless it is echoed and rendered first).
 */
export class LogprobRenderer {
  readonly #endpoint: Endpoint
  readonly #pieces: TokenPieces
  readonly #text: IncrementalDecoder
  #offset = 0

  constructor (endpoint: Endpoint, tokenizer: Tokenizer, pieces: TokenPieces, context: readonly number[]) {
    this.#endpoint = endpoint
    this.#pieces = pieces
    this.#text = new IncrementalDecoder(tokenizer, { context })
  }

  /** `entries[i]` belongs to `ids[i]` (undefined: none, as for a prompt's first token). */
  render (ids: readonly number[], entries: ReadonlyArray<TokenLogprob | undefined>): ChatLogprobs | CompletionLogprobs {
    return this.#endpoint === 'chat' ? this.#chat(entries) : this.#completion(ids, entries)
  }

  #chat (entries: ReadonlyArray<TokenLogprob | undefined>): ChatLogprobs {
    const shown = (token: number, logprob: number): ChatTokenLogprob => {
      const piece = this.#pieces.of(token)
      return { token: piece.text, logprob, bytes: piece.bytes }
    }
    const content = entries.filter(e => e !== undefined).map(e => ({ ...shown(e.token, e.logprob), top_logprobs: e.top.map(t => shown(t.token, t.logprob)) }))
    return { content, refusal: null }
  }

  #completion (ids: readonly number[], entries: ReadonlyArray<TokenLogprob | undefined>): CompletionLogprobs {
    const logprobs: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }
    for (const [i, id] of ids.entries()) {
      const entry = entries[i]
      logprobs.tokens.push(this.#pieces.of(id).text)
      logprobs.token_logprobs.push(entry?.logprob ?? null)
      logprobs.top_logprobs.push(entry === undefined ? null : Object.fromEntries(entry.top.map(t => [this.#pieces.of(t.token).text, t.logprob])))
      logprobs.text_offset.push(this.#offset)
      this.#offset += this.#text.push(id).length
    }
    return logprobs
  }
}
