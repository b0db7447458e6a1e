import { cleanUpSafeEnd } from './clean-up-spaces.js'
import { byteOfToken } from './decoder.js'
import type { Tokenizer } from './tokenizer.js'

export interface IncrementalDecoderOptions {
  /**
   * Ids already shown before the stream starts, usually the prompt. With them the stream is
   * `decode(context + generated)` minus `decode(context)`, so the first generated token keeps its
   * leading space; without them it is `decode(generated)`, whose first leading space is stripped.
   */
  context?: readonly number[]
  /** Leave special tokens out of the text. Default true. */
  skipSpecialTokens?: boolean
}

/** Tokens kept in the window after it is moved forward; the window is re-decoded on every push. */
const WINDOW = 6

/**
 * Turns a stream of generated ids into printable text chunks. The chunks, concatenated with
 * `flush()`, equal the one-shot decode (see `context`) for every sequence of ids that decodes to
 * valid text; no chunk ends inside a character: byte-fallback tokens (`<0xE2><0x82>`) are held back
 * until their UTF-8 sequence completes.
 *
 * How: it re-decodes a short window of recent tokens and emits what grew beyond the text already
 * shown, holding back a trailing U+FFFD (an unfinished byte sequence) and, when the tokenizer
 * cleans up spaces, a tail that the clean-up may still rewrite. The window starts at a token that
 * is not a byte token, so decoding from there gives the same continuation as decoding from the start.
 *
 * Known difference: when a byte sequence that was complete continues with bytes that make the whole
 * run invalid UTF-8, the one-shot decode shows U+FFFD for every byte of the run, while the stream has
 * already shown the complete characters. A decoder `Strip` with `stop > 0` (trailing strip, unused by
 * Llama checkpoints) is not held back either.
 */
export class IncrementalDecoder {
  readonly #tokenizer: Tokenizer
  readonly #skipSpecial: boolean
  /** ids of the context and the stream, special tokens removed when skipped */
  readonly #ids: number[] = []
  /** index in #ids where the decoded window starts */
  #start = 0
  /** characters of decode(window) already shown (or part of the context) */
  #shown = 0

  constructor (tokenizer: Tokenizer, { context = [], skipSpecialTokens = true }: IncrementalDecoderOptions = {}) {
    this.#tokenizer = tokenizer
    this.#skipSpecial = skipSpecialTokens
    for (const id of context) if (this.#keeps(id)) this.#ids.push(id)
    this.#moveWindow()
    this.#shown = this.#decodeWindow().length
  }

  /** Adds one generated id; returns the text that is now safe to print (often "", never half a character). */
  push (id: number): string {
    if (!this.#keeps(id)) return ''
    this.#ids.push(id)
    const text = this.#decodeWindow()
    let end = text.length
    while (end > 0 && text.charCodeAt(end - 1) === 0xFFFD) end--
    if (this.#tokenizer.cleanUpTokenizationSpaces) end = cleanUpSafeEnd(text, end)
    let chunk = ''
    if (end > this.#shown) {
      chunk = text.slice(this.#shown, end)
      this.#shown = end
    }
    if (this.#shown === text.length && this.#ids.length - this.#start > WINDOW) {
      this.#moveWindow()
      this.#shown = this.#decodeWindow().length
    }
    return chunk
  }

  /** Returns whatever is still held back (an unfinished byte sequence shows as U+FFFD, as in one-shot decode). */
  flush (): string {
    const text = this.#decodeWindow()
    const chunk = text.slice(this.#shown)
    this.#shown = Math.max(this.#shown, text.length)
    return chunk
  }

  #keeps (id: number): boolean {
    return !(this.#skipSpecial && this.#tokenizer.isSpecialToken(id))
  }

  #decodeWindow (): string {
    return this.#tokenizer.decode(this.#ids.slice(this.#start), { skipSpecialTokens: this.#skipSpecial })
  }

  /** Starts the window at the last token that is not a byte token (only call when nothing is held back). */
  #moveWindow (): void {
    for (let i = this.#ids.length - 1; i > this.#start; i--) {
      const token = this.#tokenizer.idToToken(this.#ids[i] as number)
      if (token !== undefined && byteOfToken(token) === undefined) {
        this.#start = i
        return
      }
    }
  }
}
