import { CheckpointError } from '../../model/errors.js'

/** Where a value sits in a tokenizer file, for error messages: file `tokenizer.json`, field `decoder.decoders[2]`. */
export interface JsonPath {
  readonly file: string
  readonly field: string
}

/** The path of `key` (a property name or an array index) below `at`. */
export function childPath (at: JsonPath, key: string | number): JsonPath {
  return { file: at.file, field: typeof key === 'number' ? `${at.field}[${key}]` : `${at.field}.${key}` }
}

/** An error for a value Petal cannot read at all (wrong JSON type, missing, out of range). */
export function invalidField (at: JsonPath, why: string, value: unknown): CheckpointError {
  return new CheckpointError(`${at.file}: field "${at.field}" ${why}: current value is ${show(value)}`)
}

/** An error for a well-formed value that names a kind Petal does not implement. */
export function unsupportedField (at: JsonPath, value: unknown, supported: readonly string[]): CheckpointError {
  const list = supported.length === 0 ? 'none' : supported.join(', ')
  return new CheckpointError(`${at.file}: field "${at.field}" is not supported: current value is ${show(value)} (supported: ${list})`)
}

/** `value` as a JSON object, or a CheckpointError naming the field. */
export function objectField (value: unknown, at: JsonPath): Record<string, unknown> {
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw invalidField(at, 'must be a JSON object', value)
  return value as Record<string, unknown>
}

/** `value` as a JSON array, or a CheckpointError naming the field. */
export function arrayField (value: unknown, at: JsonPath): unknown[] {
  if (!Array.isArray(value)) throw invalidField(at, 'must be a JSON array', value)
  return value
}

/** `value` as a string, or a CheckpointError naming the field. */
export function stringField (value: unknown, at: JsonPath): string {
  if (typeof value !== 'string') throw invalidField(at, 'must be a string', value)
  return value
}

/** The `type` tag of a component object (normalizer, decoder, ...). */
export function componentType (spec: Record<string, unknown>, at: JsonPath): string {
  return stringField(spec.type, childPath(at, 'type'))
}

/**
 * The string of a `pattern` field: `{ "String": " " }` as is, `{ "Regex": "..." }` as a global RegExp.
 * Hugging Face regexes use Oniguruma syntax; the common subset reads the same in JavaScript.
 */
export function patternField (value: unknown, at: JsonPath): string | RegExp {
  const spec = objectField(value, at)
  if (typeof spec.String === 'string') return spec.String
  if (typeof spec.Regex === 'string') {
    try {
      return new RegExp(withoutCaseGroups(spec.Regex), 'gu')
    } catch (err: any) {
      throw new CheckpointError(`${at.file}: field "${at.field}.Regex" is not a regular expression Petal can run: current value is ${show(spec.Regex)}`, { cause: err })
    }
  }
  throw invalidField(at, 'must be {"String": ...} or {"Regex": ...}', value)
}

/**
 * Rewrites Oniguruma's case-insensitive groups `(?i:...)`, which Node 22's RegExp lacks, as
 * plain groups whose ASCII letters match either case: `(?i:'s|'t)` -> `(?:'[sS]|'[tT])`
 * (Llama 3's and Qwen's split patterns use one for English contractions). Letters inside a
 * character class or after a backslash are left as they are.
 */
export function withoutCaseGroups (source: string): string {
  let out = ''
  let i = 0
  while (i < source.length) {
    if (!source.startsWith('(?i:', i)) {
      out += source[i] as string
      if (source[i] === '\\' && i + 1 < source.length) out += source[++i] as string
      i++
      continue
    }
    out += '(?:'
    i += 4
    let depth = 1
    let inClass = false
    while (i < source.length && depth > 0) {
      const c = source[i] as string
      if (c === '\\' && i + 1 < source.length) {
        out += c + (source[i + 1] as string)
        i += 2
        continue
      }
      if (inClass) inClass = c !== ']'
      else if (c === '[') inClass = true
      else if (c === '(') depth++
      else if (c === ')') depth--
      out += !inClass && /[a-zA-Z]/.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c
      i++
    }
  }
  return out
}

/** Replaces every match of `pattern` in `text`. */
export function replaceAll (text: string, pattern: string | RegExp, content: string): string {
  if (typeof pattern === 'string') return pattern === '' ? text : text.split(pattern).join(content)
  return text.replace(pattern, () => content)
}

function show (value: unknown): string {
  const s = JSON.stringify(value) ?? String(value)
  return s.length > 120 ? `${s.slice(0, 117)}...` : s
}
