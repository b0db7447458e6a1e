import { readAddedToken, type AddedToken } from './added-tokens.js'
import { arrayField, childPath, invalidField, objectField, type JsonPath } from './json-field.js'

/** What Petal takes from transformers' `tokenizer_config.json`. Every field is optional there. */
export interface TokenizerConfig {
  readonly addBosToken: boolean | undefined
  readonly addEosToken: boolean | undefined
  readonly bosToken: string | undefined
  readonly eosToken: string | undefined
  readonly unkToken: string | undefined
  readonly padToken: string | undefined
  readonly additionalSpecialTokens: readonly string[]
  /** `added_tokens_decoder`: id -> token, merged with tokenizer.json's `added_tokens`. */
  readonly addedTokens: readonly AddedToken[]
  /** transformers' `clean_up_tokenization_spaces` (" ." -> "." and friends after decoding). */
  readonly cleanUpTokenizationSpaces: boolean
}

/** Reads a parsed tokenizer_config.json; `undefined` (no file) gives an empty config. */
export function parseTokenizerConfig (raw: unknown, file = 'tokenizer_config.json'): TokenizerConfig {
  const at = (field: string): JsonPath => ({ file, field })
  const cfg = raw === undefined ? {} : objectField(raw, { file, field: '(root)' })
  const flag = (field: string): boolean | undefined => {
    const v = cfg[field]
    if (v == null) return undefined
    if (typeof v !== 'boolean') throw invalidField(at(field), 'must be a boolean', v)
    return v
  }
  const token = (field: string): string | undefined => tokenContent(cfg[field], at(field))

  const addedTokens: AddedToken[] = []
  if (cfg.added_tokens_decoder != null) {
    const decoderAt = at('added_tokens_decoder')
    for (const [key, entry] of Object.entries(objectField(cfg.added_tokens_decoder, decoderAt))) {
      const id = Number(key)
      if (!Number.isInteger(id) || id < 0) throw invalidField(childPath(decoderAt, key), 'must be keyed by a token id', key)
      addedTokens.push(readAddedToken(entry, childPath(decoderAt, key), id))
    }
  }
  const extraAt = at('additional_special_tokens')
  const additionalSpecialTokens = arrayField(cfg.additional_special_tokens ?? [], extraAt)
    .map((t, i) => tokenContent(t, childPath(extraAt, i)))
    .filter((t): t is string => t !== undefined)

  return {
    addBosToken: flag('add_bos_token'),
    addEosToken: flag('add_eos_token'),
    bosToken: token('bos_token'),
    eosToken: token('eos_token'),
    unkToken: token('unk_token'),
    padToken: token('pad_token'),
    additionalSpecialTokens,
    addedTokens,
    cleanUpTokenizationSpaces: flag('clean_up_tokenization_spaces') ?? false
  }
}

/** A special-token field: a string, an AddedToken object `{ "content": ... }`, or null. */
function tokenContent (value: unknown, at: JsonPath): string | undefined {
  if (value == null) return undefined
  if (typeof value === 'string') return value
  const content = objectField(value, at).content
  if (typeof content !== 'string') throw invalidField(childPath(at, 'content'), 'must be a string', content)
  return content
}
