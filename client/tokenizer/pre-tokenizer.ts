import { GPT2_SPLIT, splitByPattern, toByteLevel, type SplitBehavior } from './byte-level.js'
import { arrayField, childPath, componentType, invalidField, objectField, patternField, stringField, unsupportedField, type JsonPath } from './json-field.js'

/**
 * Splits one normalized piece of text into the words the model encodes one by one
 * (Hugging Face `pre_tokenizer`). `atTextStart` is true when the piece begins at offset 0 of the
 * original text, i.e. no added token came before it.
 */
export type PreTokenize = (piece: string, atTextStart: boolean) => string[]

/** When Metaspace puts a replacement character in front of a piece that does not start with one. */
export type PrependScheme = 'always' | 'first' | 'never'

const SUPPORTED = ['Metaspace', 'Sequence', 'ByteLevel', 'Split', 'Digits']
const SPLIT_BEHAVIORS: readonly SplitBehavior[] = ['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext']

/** Builds the `pre_tokenizer` of a tokenizer.json. `null` keeps each piece whole. */
export function buildPreTokenizer (spec: unknown, at: JsonPath): PreTokenize {
  if (spec == null) return piece => piece === '' ? [] : [piece]
  const obj = objectField(spec, at)
  const type = componentType(obj, at)
  switch (type) {
    case 'Metaspace': {
      const { replacement, prependScheme, split } = readMetaspace(obj, at)
      return (piece, atTextStart) => metaspace(piece, atTextStart, replacement, prependScheme, split)
    }
    case 'Sequence': {
      const listAt = childPath(at, 'pretokenizers')
      const steps = arrayField(obj.pretokenizers, listAt).map((s, i) => buildPreTokenizer(s, childPath(listAt, i)))
      return (piece, atTextStart) => steps.reduce<string[]>(
        (pieces, step) => pieces.flatMap((p, i) => step(p, atTextStart && i === 0)), [piece])
    }
    case 'ByteLevel': {
      // each piece: a leading space if asked, GPT-2's word split if asked, then its bytes as characters
      const addPrefixSpace = booleanField(obj, 'add_prefix_space', true, at)
      const useRegex = booleanField(obj, 'use_regex', true, at)
      return piece => {
        const text = addPrefixSpace && !piece.startsWith(' ') ? ' ' + piece : piece
        const words = useRegex ? splitByPattern(text, GPT2_SPLIT, 'Isolated') : [text]
        return words.filter(w => w !== '').map(toByteLevel)
      }
    }
    case 'Split': {
      const pattern = patternField(obj.pattern, childPath(at, 'pattern'))
      const behavior = obj.behavior
      if (!SPLIT_BEHAVIORS.includes(behavior as SplitBehavior)) throw unsupportedField(childPath(at, 'behavior'), behavior, SPLIT_BEHAVIORS)
      if (booleanField(obj, 'invert', false, at)) throw unsupportedField(childPath(at, 'invert'), true, ['false'])
      return piece => splitByPattern(piece, pattern, behavior as SplitBehavior)
    }
    case 'Digits': {
      // numbers apart from the rest (SmolLM): every digit on its own, or each run of digits
      const digits = booleanField(obj, 'individual_digits', false, at) ? /\p{N}/gu : /\p{N}+/gu
      return piece => splitByPattern(piece, digits, 'Isolated')
    }
    default:
      throw unsupportedField(childPath(at, 'type'), type, SUPPORTED)
  }
}

function booleanField (obj: Record<string, unknown>, field: string, fallback: boolean, at: JsonPath): boolean {
  const v = obj[field] ?? fallback
  if (typeof v !== 'boolean') throw invalidField(childPath(at, field), 'must be a boolean', v)
  return v
}

/** The settings shared by the Metaspace pre-tokenizer and decoder, old (`add_prefix_space`) and new spellings. */
export function readMetaspace (obj: Record<string, unknown>, at: JsonPath): { replacement: string, prependScheme: PrependScheme, split: boolean } {
  const replacement = stringField(obj.replacement ?? '▁', childPath(at, 'replacement'))
  if ([...replacement].length !== 1) throw invalidField(childPath(at, 'replacement'), 'must be one character', replacement)
  const schemeAt = childPath(at, 'prepend_scheme')
  const scheme = obj.prepend_scheme ?? 'always'
  if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') throw unsupportedField(schemeAt, scheme, ['always', 'first', 'never'])
  let prependScheme: PrependScheme = scheme
  if (obj.add_prefix_space === false) {
    if (obj.prepend_scheme != null && scheme !== 'never') {
      throw invalidField(childPath(at, 'add_prefix_space'), `contradicts prepend_scheme "${scheme}"`, false)
    }
    prependScheme = 'never'
  }
  const split = obj.split ?? true
  if (typeof split !== 'boolean') throw invalidField(childPath(at, 'split'), 'must be a boolean', split)
  return { replacement, prependScheme, split }
}

/**
 * SentencePiece-style word split: spaces become `replacement`, the piece gets a leading `replacement`
 * as `prependScheme` says, then (with `split`) it is cut before every `replacement`.
 * "Hey  you" -> ["▁Hey", "▁", "▁you"].
 */
function metaspace (piece: string, atTextStart: boolean, replacement: string, prependScheme: PrependScheme, split: boolean): string[] {
  let text = piece.split(' ').join(replacement)
  if (text === '') return []
  const prepend = prependScheme === 'always' || (prependScheme === 'first' && atTextStart)
  if (prepend && !text.startsWith(replacement)) text = replacement + text
  if (!split) return [text]
  const words: string[] = []
  let start = 0
  for (let i = text.indexOf(replacement, 1); i !== -1; i = text.indexOf(replacement, i + replacement.length)) {
    if (i > start) words.push(text.slice(start, i))
    start = i
  }
  words.push(text.slice(start))
  return words
}
