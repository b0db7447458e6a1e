import { childPath, componentType, objectField, arrayField, patternField, replaceAll, stringField, unsupportedField, type JsonPath } from './json-field.js'

/** Rewrites one piece of input text before it is split into words (Hugging Face `normalizer`). */
export type Normalize = (text: string) => string

const SUPPORTED = ['Sequence', 'Prepend', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD']

/**
 * Builds the `normalizer` of a tokenizer.json. `null` gives the identity.
 * Supported: Sequence, Prepend, Replace (String or Regex pattern) and the Unicode forms NFC/NFD/NFKC/NFKD.
 */
export function buildNormalizer (spec: unknown, at: JsonPath): Normalize {
  if (spec == null) return text => text
  const obj = objectField(spec, at)
  const type = componentType(obj, at)
  switch (type) {
    case 'Sequence': {
      const listAt = childPath(at, 'normalizers')
      const steps = arrayField(obj.normalizers, listAt).map((s, i) => buildNormalizer(s, childPath(listAt, i)))
      return text => steps.reduce((t, step) => step(t), text)
    }
    case 'Prepend': {
      // Hugging Face prepends only to a non-empty piece: "" stays "".
      const prefix = stringField(obj.prepend, childPath(at, 'prepend'))
      return text => text === '' ? text : prefix + text
    }
    case 'Replace': {
      const pattern = patternField(obj.pattern, childPath(at, 'pattern'))
      const content = stringField(obj.content, childPath(at, 'content'))
      return text => replaceAll(text, pattern, content)
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return text => text.normalize(type)
    default:
      throw unsupportedField(childPath(at, 'type'), type, SUPPORTED)
  }
}
