import { arrayField, childPath, invalidField, objectField, stringField, type JsonPath } from './json-field.js'

/** A token matched in the text before the model runs (Hugging Face `added_tokens`: `<s>`, `</s>`, chat markers). */
export interface AddedToken {
  readonly id: number
  readonly content: string
  /** Skipped by `decode(ids, { skipSpecialTokens: true })`. */
  readonly special: boolean
  /** Also swallows the whitespace on its left. */
  readonly lstrip: boolean
  /** Also swallows the whitespace on its right. */
  readonly rstrip: boolean
  /** Matches only where no word character touches it. */
  readonly singleWord: boolean
  /** Matched in the normalized text rather than the raw text. */
  readonly normalized: boolean
}

/** A stretch of text between added tokens, with its start offset in the text it was cut from. */
export interface TextPiece {
  readonly text: string
  readonly start: number
}

/** What a text is cut into: added-token ids and the pieces between them, in order. */
export type Segment = number | TextPiece

const WORD_AT_END = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u
const WORD_AT_START = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u
const SPACE_AT_END = /\s*$/u
const SPACE_AT_START = /^\s*/u

/** Reads `added_tokens` of tokenizer.json (a list of `{id, content, special, lstrip, ...}`). */
export function readAddedTokens (spec: unknown, at: JsonPath): AddedToken[] {
  return arrayField(spec ?? [], at).map((entry, i) => readAddedToken(entry, childPath(at, i), undefined))
}

/** Reads one added-token object; `id` comes from the object or, in tokenizer_config.json, from its key. */
export function readAddedToken (entry: unknown, at: JsonPath, id: number | undefined): AddedToken {
  const obj = objectField(entry, at)
  const tokenId = obj.id ?? id
  if (!Number.isInteger(tokenId) || (tokenId as number) < 0) throw invalidField(childPath(at, 'id'), 'must be a token id', tokenId)
  const special = obj.special === true
  return {
    id: tokenId as number,
    content: stringField(obj.content, childPath(at, 'content')),
    special,
    lstrip: obj.lstrip === true,
    rstrip: obj.rstrip === true,
    singleWord: obj.single_word === true,
    normalized: typeof obj.normalized === 'boolean' ? obj.normalized : !special
  }
}

/**
 * Finds added tokens in a text, leftmost first and longest among those starting at the same place
 * (Hugging Face's leftmost-longest Aho-Corasick search), honouring lstrip/rstrip/single_word.
 */
export class AddedTokenMatcher {
  /** first UTF-16 unit -> tokens starting with it, longest first */
  readonly #byFirstUnit = new Map<number, AddedToken[]>()

  constructor (tokens: Iterable<AddedToken>, patternOf: (token: AddedToken) => string = t => t.content) {
    for (const token of tokens) {
      const pattern = patternOf(token)
      if (pattern === '') continue
      const first = pattern.charCodeAt(0)
      const list = this.#byFirstUnit.get(first) ?? []
      list.push({ ...token, content: pattern })
      this.#byFirstUnit.set(first, list)
    }
    for (const list of this.#byFirstUnit.values()) list.sort((a, b) => b.content.length - a.content.length)
  }

  /** Cuts `text` into added-token ids and the text pieces between them (an empty text gives one empty piece). */
  split (text: string): Segment[] {
    if (this.#byFirstUnit.size === 0 || text === '') return [{ text, start: 0 }]
    const out: Segment[] = []
    let pieceStart = 0 // end of the previous match
    let i = 0
    while (i < text.length) {
      const token = this.#longestAt(text, i)
      if (token === undefined) {
        i++
        continue
      }
      let start = i
      let stop = i + token.content.length
      i = stop
      if (token.singleWord) {
        const wordBefore = start > 0 && WORD_AT_END.test(text.slice(Math.max(0, start - 2), start))
        const wordAfter = stop < text.length && WORD_AT_START.test(text.slice(stop, stop + 2))
        if (wordBefore || wordAfter) continue
      }
      if (token.lstrip) start = Math.max(pieceStart, (SPACE_AT_END.exec(text.slice(0, start)) as RegExpExecArray).index)
      if (token.rstrip) stop += (SPACE_AT_START.exec(text.slice(stop)) as RegExpExecArray)[0].length
      if (start > pieceStart) out.push({ text: text.slice(pieceStart, start), start: pieceStart })
      out.push(token.id)
      pieceStart = stop
      i = stop
    }
    if (pieceStart < text.length) out.push({ text: text.slice(pieceStart), start: pieceStart })
    return out
  }

  #longestAt (text: string, i: number): AddedToken | undefined {
    const candidates = this.#byFirstUnit.get(text.charCodeAt(i))
    if (candidates === undefined) return undefined
    return candidates.find(t => text.startsWith(t.content, i))
  }
}
