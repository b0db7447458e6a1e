import { arrayField, childPath, componentType, invalidField, objectField, patternField, replaceAll, stringField, unsupportedField, type JsonPath } from './json-field.js'
import { fromByteLevel } from './byte-level.js'
import { readMetaspace } from './pre-tokenizer.js'

/** Turns the token strings of a sequence back into text (Hugging Face `decoder`). */
export type Decode = (tokens: readonly string[]) => string

/** One step of a decoder chain: token strings in, token strings out. */
type DecodeStep = (tokens: string[]) => string[]

const SUPPORTED = ['Sequence', 'Replace', 'ByteFallback', 'Fuse', 'Strip', 'Metaspace', 'ByteLevel']
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Builds the `decoder` of a tokenizer.json. With none, tokens are joined with spaces as Hugging Face does. */
export function buildDecoder (spec: unknown, at: JsonPath): Decode {
  if (spec == null) return tokens => tokens.join(' ')
  const step = buildStep(spec, at)
  return tokens => step(tokens.slice()).join('')
}

/** The byte of a byte-fallback token such as `<0xE2>`, or undefined for any other token. */
export function byteOfToken (token: string): number | undefined {
  const m = BYTE_TOKEN.exec(token)
  return m === null ? undefined : parseInt(m[1] as string, 16)
}

function buildStep (spec: unknown, at: JsonPath): DecodeStep {
  const obj = objectField(spec, at)
  const type = componentType(obj, at)
  switch (type) {
    case 'Sequence': {
      const listAt = childPath(at, 'decoders')
      const steps = arrayField(obj.decoders, listAt).map((s, i) => buildStep(s, childPath(listAt, i)))
      return tokens => steps.reduce((t, step) => step(t), tokens)
    }
    case 'Replace': {
      const pattern = patternField(obj.pattern, childPath(at, 'pattern'))
      const content = stringField(obj.content, childPath(at, 'content'))
      return tokens => tokens.map(t => replaceAll(t, pattern, content))
    }
    case 'ByteFallback':
      return byteFallback
    case 'Fuse':
      return tokens => [tokens.join('')]
    case 'Strip': {
      const content = stringField(obj.content, childPath(at, 'content'))
      if ([...content].length !== 1) throw invalidField(childPath(at, 'content'), 'must be one character', content)
      const count = (field: string): number => {
        const v = obj[field] ?? 0
        if (!Number.isInteger(v) || (v as number) < 0) throw invalidField(childPath(at, field), 'must be a non-negative integer', v)
        return v as number
      }
      const start = count('start')
      const stop = count('stop')
      return tokens => tokens.map(t => strip(t, content, start, stop))
    }
    case 'Metaspace': {
      const { replacement, prependScheme } = readMetaspace(obj, at)
      // The first token loses every replacement character (its prepended space), the others turn them into spaces.
      return tokens => tokens.map((t, i) => t.split(replacement).join(i === 0 && prependScheme !== 'never' ? '' : ' '))
    }
    case 'ByteLevel':
      // the byte-level characters of all tokens back to bytes, then UTF-8 (byte-level.ts)
      return tokens => [fromByteLevel(tokens)]
    default:
      throw unsupportedField(childPath(at, 'type'), type, SUPPORTED)
  }
}

/**
 * Joins each run of byte tokens (`<0xE2><0x82><0xAC>` -> "€"). A run that is not valid UTF-8 becomes
 * one U+FFFD per byte, as Hugging Face does.
 */
function byteFallback (tokens: string[]): string[] {
  const out: string[] = []
  const run: number[] = []
  const flush = (): void => {
    if (run.length === 0) return
    try {
      out.push(utf8.decode(Uint8Array.from(run)))
    } catch {
      for (let i = 0; i < run.length; i++) out.push('\uFFFD')
    }
    run.length = 0
  }
  for (const token of tokens) {
    const byte = byteOfToken(token)
    if (byte !== undefined) {
      run.push(byte)
    } else {
      flush()
      out.push(token)
    }
  }
  flush()
  return out
}

/** Removes up to `start` leading and `stop` trailing copies of `content` (one character). */
function strip (token: string, content: string, start: number, stop: number): string {
  let from = 0
  for (let k = 0; k < start && token.startsWith(content, from); k++) from += content.length
  let to = token.length
  for (let k = 0; k < stop && to - content.length >= from && token.endsWith(content, to); k++) to -= content.length
  return token.slice(from, to)
}
