import { arrayField, childPath, componentType, invalidField, objectField, stringField, unsupportedField, type JsonPath } from './json-field.js'

/** The special-token ids that `encode(text, { addSpecialTokens: true })` puts around the text's ids. */
export interface SpecialTokenTemplate {
  readonly prefix: readonly number[]
  readonly suffix: readonly number[]
}

const SUPPORTED = ['TemplateProcessing', 'Sequence', 'ByteLevel']

/**
 * Reads the `post_processor` of a tokenizer.json for single sequences. `null` adds nothing.
 * TemplateProcessing `single: [<s>, $A]` gives prefix [id of <s>], suffix [].
 */
export function buildPostProcessor (spec: unknown, at: JsonPath): SpecialTokenTemplate {
  if (spec == null) return { prefix: [], suffix: [] }
  const obj = objectField(spec, at)
  const type = componentType(obj, at)
  if (type === 'Sequence') {
    // Each processor wraps the output of the previous one.
    const listAt = childPath(at, 'processors')
    return arrayField(obj.processors, listAt).reduce<SpecialTokenTemplate>((acc, p, i) => {
      const t = buildPostProcessor(p, childPath(listAt, i))
      return { prefix: [...t.prefix, ...acc.prefix], suffix: [...acc.suffix, ...t.suffix] }
    }, { prefix: [], suffix: [] })
  }
  if (type === 'ByteLevel') return { prefix: [], suffix: [] } // only trims offsets, which ids do not have
  if (type !== 'TemplateProcessing') throw unsupportedField(childPath(at, 'type'), type, SUPPORTED)

  const specialAt = childPath(at, 'special_tokens')
  const special = objectField(obj.special_tokens ?? {}, specialAt)
  const singleAt = childPath(at, 'single')
  const prefix: number[] = []
  const suffix: number[] = []
  let seenSequence = false
  arrayField(obj.single, singleAt).forEach((item, i) => {
    const itemAt = childPath(singleAt, i)
    const piece = objectField(item, itemAt)
    if (piece.Sequence != null) {
      const id = objectField(piece.Sequence, childPath(itemAt, 'Sequence')).id
      if (id !== 'A' || seenSequence) throw invalidField(childPath(itemAt, 'Sequence.id'), 'must name sequence "A" once in a single template', id)
      seenSequence = true
    } else if (piece.SpecialToken != null) {
      const name = stringField(objectField(piece.SpecialToken, childPath(itemAt, 'SpecialToken')).id, childPath(itemAt, 'SpecialToken.id'))
      const entryAt = childPath(specialAt, name)
      const ids = arrayField(objectField(special[name], entryAt).ids, childPath(entryAt, 'ids'))
      for (const id of ids) {
        if (!Number.isInteger(id) || (id as number) < 0) throw invalidField(childPath(entryAt, 'ids'), 'must list token ids', ids)
        ;(seenSequence ? suffix : prefix).push(id as number)
      }
    } else {
      throw invalidField(itemAt, 'must be {"SpecialToken": ...} or {"Sequence": ...}', item)
    }
  })
  if (!seenSequence) throw invalidField(singleAt, 'must contain the sequence "A"', obj.single)
  return { prefix, suffix }
}

/**
 * Applies tokenizer_config.json's `add_bos_token` / `add_eos_token` (when given) to a template:
 * true puts the token at the start / end if missing, false removes it, as Llama tokenizers in
 * transformers rebuild their post-processor from these flags.
 */
export function applyBosEosFlags (template: SpecialTokenTemplate, flags: { addBos?: boolean, addEos?: boolean, bosId?: number, eosId?: number }): SpecialTokenTemplate {
  let { prefix, suffix } = template
  const { addBos, addEos, bosId, eosId } = flags
  if (addBos !== undefined && bosId !== undefined) {
    if (addBos && !prefix.includes(bosId)) prefix = [bosId, ...prefix]
    if (!addBos) prefix = prefix.filter(id => id !== bosId)
  }
  if (addEos !== undefined && eosId !== undefined) {
    if (addEos && !suffix.includes(eosId)) suffix = [...suffix, eosId]
    if (!addEos) suffix = suffix.filter(id => id !== eosId)
  }
  return { prefix, suffix }
}
