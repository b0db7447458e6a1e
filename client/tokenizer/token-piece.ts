import { byteOfToken } from './decoder.js'
import type { Tokenizer } from './tokenizer.js'

/** What one token adds to a text, as logprobs show it. */
export interface TokenPiece {
  /** Its characters in the middle of a text ("▁the" -> " the"); U+FFFD for part of a character. */
  readonly text: string
  /** Its UTF-8 bytes, exact for byte tokens (`<0xE2>`); null where the text is not (part of a character). */
  readonly bytes: number[] | null
}

const utf8 = new TextEncoder()

/**
 * The pieces of tokens as they read inside a text. A token decoded alone can lose what only
 * shows after others (Llama's decoder strips the leading space of a text), so each is decoded
 * after an anchor token and the anchor's own text taken off. Cached per id.
 */
export class TokenPieces {
  readonly #tokenizer: Tokenizer
  readonly #anchor: number | undefined
  readonly #anchorText: string
  readonly #cache = new Map<number, TokenPiece>()

  constructor (tokenizer: Tokenizer) {
    this.#tokenizer = tokenizer
    this.#anchor = tokenizer.encode('a', { addSpecialTokens: false })[0]
    this.#anchorText = this.#anchor === undefined ? '' : tokenizer.decode([this.#anchor])
  }

  of (id: number): TokenPiece {
    let piece = this.#cache.get(id)
    if (piece === undefined) {
      piece = this.#compute(id)
      this.#cache.set(id, piece)
    }
    return piece
  }

  #compute (id: number): TokenPiece {
    const tokenizer = this.#tokenizer
    const withAnchor = this.#anchor === undefined ? undefined : tokenizer.decode([this.#anchor, id])
    const text = withAnchor?.startsWith(this.#anchorText) === true ? withAnchor.slice(this.#anchorText.length) : tokenizer.decode([id])
    const byte = byteOfToken(tokenizer.idToToken(id) ?? '')
    if (byte !== undefined) return { text, bytes: [byte] }
    return { text, bytes: text.includes('\uFFFD') ? null : [...utf8.encode(text)] }
  }
}
