import { applyMerges, MergeTable } from './bpe-merge.js'
import { arrayField, childPath, invalidField, objectField, stringField, unsupportedField, type JsonPath } from './json-field.js'

const CACHE_LIMIT = 10_000
const CACHE_MAX_WORD = 64

/**
 * The `model` of a tokenizer.json of type BPE, as SentencePiece-converted (Llama 2, Mistral) and
 * byte-level (Llama 3) checkpoints use it: vocab + ranked merges, optional byte fallback (`<0x41>` tokens for characters outside the
 * vocab), `fuse_unk`, `ignore_merges`. No subword prefix/suffix, no dropout.
 */
export class BpeModel {
  readonly #vocab: Map<string, number>
  readonly #idToToken: string[]
  readonly #merges: MergeTable
  readonly #byteIds: Int32Array // (256,) id of the `<0xXX>` token, -1 if absent
  readonly #byteFallback: boolean
  readonly #fuseUnk: boolean
  readonly #ignoreMerges: boolean
  readonly #cache = new Map<string, number[]>()
  /** Id of the unknown token, if the model has one. */
  readonly unkId: number | undefined

  private constructor (vocab: Map<string, number>, merges: MergeTable, opts: { byteFallback: boolean, fuseUnk: boolean, ignoreMerges: boolean, unkId: number | undefined }) {
    this.#vocab = vocab
    this.#idToToken = []
    for (const [token, id] of vocab) this.#idToToken[id] = token
    this.#merges = merges
    this.#byteFallback = opts.byteFallback
    this.#fuseUnk = opts.fuseUnk
    this.#ignoreMerges = opts.ignoreMerges
    this.unkId = opts.unkId
    this.#byteIds = new Int32Array(256).fill(-1)
    for (let b = 0; b < 256; b++) this.#byteIds[b] = vocab.get(byteToken(b)) ?? -1
  }

  /** Reads the `model` object of tokenizer.json; refuses every other model type with the field named. */
  static fromJson (spec: unknown, at: JsonPath): BpeModel {
    const obj = objectField(spec, at)
    const type = obj.type ?? 'BPE'
    if (type !== 'BPE') throw unsupportedField(childPath(at, 'type'), type, ['BPE'])
    if (obj.dropout != null && obj.dropout !== 0) throw unsupportedField(childPath(at, 'dropout'), obj.dropout, ['null', '0'])
    for (const field of ['continuing_subword_prefix', 'end_of_word_suffix']) {
      if (obj[field] != null && obj[field] !== '') throw unsupportedField(childPath(at, field), obj[field], ['null'])
    }
    const flag = (field: string): boolean => {
      const v = obj[field] ?? false
      if (typeof v !== 'boolean') throw invalidField(childPath(at, field), 'must be a boolean', v)
      return v
    }

    const vocabAt = childPath(at, 'vocab')
    const vocab = new Map<string, number>()
    let stride = 0
    for (const [token, id] of Object.entries(objectField(obj.vocab, vocabAt))) {
      if (!Number.isInteger(id) || (id as number) < 0) throw invalidField(childPath(vocabAt, token), 'must be a token id', id)
      vocab.set(token, id as number)
      stride = Math.max(stride, (id as number) + 1)
    }

    const mergesAt = childPath(at, 'merges')
    const merges = new MergeTable(stride)
    arrayField(obj.merges ?? [], mergesAt).forEach((rule, i) => {
      const [left, right] = mergePair(rule, childPath(mergesAt, i))
      const l = vocab.get(left)
      const r = vocab.get(right)
      const m = vocab.get(left + right)
      if (l === undefined || r === undefined || m === undefined) {
        throw invalidField(childPath(mergesAt, i), 'joins tokens that are not all in model.vocab', rule)
      }
      merges.add(l, r, m)
    })

    const unkToken = obj.unk_token == null ? undefined : stringField(obj.unk_token, childPath(at, 'unk_token'))
    const unkId = unkToken === undefined ? undefined : vocab.get(unkToken)
    if (unkToken !== undefined && unkId === undefined) throw invalidField(childPath(at, 'unk_token'), 'is not in model.vocab', unkToken)
    return new BpeModel(vocab, merges, { byteFallback: flag('byte_fallback'), fuseUnk: flag('fuse_unk'), ignoreMerges: flag('ignore_merges'), unkId })
  }

  /** One past the largest id of the model vocabulary. */
  get size (): number {
    return this.#idToToken.length
  }

  tokenToId (token: string): number | undefined {
    return this.#vocab.get(token)
  }

  idToToken (id: number): string | undefined {
    return this.#idToToken[id]
  }

  /** Appends the ids of one pre-tokenized word to `out`. */
  tokenize (word: string, out: number[]): void {
    if (word === '') return
    if (this.#ignoreMerges) {
      const whole = this.#vocab.get(word)
      if (whole !== undefined) {
        out.push(whole)
        return
      }
    }
    const cached = this.#cache.get(word)
    if (cached !== undefined) {
      for (const id of cached) out.push(id)
      return
    }
    const ids = applyMerges(this.#symbols(word), this.#merges)
    if (word.length <= CACHE_MAX_WORD) {
      if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear()
      this.#cache.set(word, ids)
    }
    for (const id of ids) out.push(id)
  }

  /** The word as initial symbols: one per character, its UTF-8 bytes when byte fallback applies, else `unk`. */
  #symbols (word: string): number[] {
    const symbols: number[] = []
    let lastWasUnk = false
    for (const char of word) {
      const id = this.#vocab.get(char)
      if (id !== undefined) {
        symbols.push(id)
        lastWasUnk = false
        continue
      }
      if (this.#byteFallback) {
        const bytes = Buffer.from(char, 'utf8')
        const byteIds = Array.from(bytes, b => this.#byteIds[b] as number)
        if (byteIds.every(b => b >= 0)) {
          symbols.push(...byteIds)
          lastWasUnk = false
          continue
        }
      }
      // No unk token: Hugging Face drops the character.
      if (this.unkId === undefined) continue
      if (!(this.#fuseUnk && lastWasUnk)) symbols.push(this.unkId)
      lastWasUnk = true
    }
    return symbols
  }
}

/** `<0x0A>`: the byte-fallback token of one byte. */
export function byteToken (byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`
}

/** A merge rule as the pair it joins: "a b" (one space) or ["a", "b"]. */
function mergePair (rule: unknown, at: JsonPath): [string, string] {
  if (typeof rule === 'string') {
    const parts = rule.split(' ')
    if (parts.length === 2) return parts as [string, string]
  } else if (Array.isArray(rule) && rule.length === 2 && typeof rule[0] === 'string' && typeof rule[1] === 'string') {
    return [rule[0], rule[1]]
  }
  throw invalidField(at, 'must be "left right" or ["left", "right"]', rule)
}
