/**
 * Small field readers used by the message parsers. Each throws
 * BadMessageError naming the field, what was expected and what came.
 */
import { BadMessageError } from './errors.js'
import { MAX_ID_LENGTH, MAX_LIST_LENGTH } from './limits.js'
import { MAX_TREE_ROWS, parentsProblem } from '../model/token-tree.js'

/** A plain object read from the wire. */
export type Fields = Record<string, unknown>

/** Short description of a received value for error messages. */
export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'string') return value.length > 40 ? `string "${value.slice(0, 40)}..."` : `string "${value}"`
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`
  if (Array.isArray(value)) return `array(${value.length})`
  if (value instanceof Uint8Array) return `bytes(${value.byteLength})`
  return typeof value === 'object' ? 'object' : typeof value
}

function fail (what: string, expected: string, value: unknown): never {
  throw new BadMessageError(`Invalid ${what}: expected ${expected}, got ${describe(value)}`)
}

/** Checks that `value` is a plain object (not an array, bytes or null). */
export function expectFields (value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    fail(what, 'an object', value)
  }
  return value as Fields
}

/** Checks `obj.type === type`. */
export function expectType (obj: Fields, type: string, what: string): void {
  if (obj['type'] !== type) fail(`${what}.type`, `"${type}"`, obj['type'])
}

/** Reads a safe integer in [min, max]. */
export function readInt (obj: Fields, field: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const value = obj[field]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(`${what}.${field}`, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, value)
  }
  return value
}

/** Reads an optional safe integer >= min; undefined when absent (null counts as absent). */
export function readOptInt (obj: Fields, field: string, what: string, min = 0): number | undefined {
  return obj[field] == null ? undefined : readInt(obj, field, what, min)
}

/** Reads a finite number >= min. */
export function readNumber (obj: Fields, field: string, what: string, min = 0): number {
  const value = obj[field]
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) fail(`${what}.${field}`, `a finite number >= ${min}`, value)
  return value
}

/** Reads an optional finite number >= min. */
export function readOptNumber (obj: Fields, field: string, what: string, min = 0): number | undefined {
  return obj[field] == null ? undefined : readNumber(obj, field, what, min)
}

/** Reads a string of 1..maxLength characters (0.. when `allowEmpty`). */
export function readString (obj: Fields, field: string, what: string, maxLength = MAX_ID_LENGTH, allowEmpty = false): string {
  const value = obj[field]
  if (typeof value !== 'string' || value.length > maxLength || (!allowEmpty && value.length === 0)) {
    fail(`${what}.${field}`, `a ${allowEmpty ? '' : 'non-empty '}string of at most ${maxLength} characters`, value)
  }
  return value
}

/** Reads an optional boolean; `fallback` when absent. */
export function readBool (obj: Fields, field: string, what: string, fallback: boolean): boolean {
  const value = obj[field]
  if (value == null) return fallback
  if (typeof value !== 'boolean') fail(`${what}.${field}`, 'a boolean', value)
  return value
}

/** Reads one of a fixed set of strings. */
export function readEnum<T extends string> (obj: Fields, field: string, what: string, values: readonly T[]): T {
  const value = obj[field]
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    fail(`${what}.${field}`, `one of ${values.join(', ')}`, value)
  }
  return value as T
}

/** Reads an array of at most maxLength items, each checked by `item` (given its path, e.g. "run.push[2]"). */
export function readList<T> (obj: Fields, field: string, what: string, item: (value: unknown, path: string) => T, maxLength = MAX_LIST_LENGTH): T[] {
  const value = obj[field]
  if (!Array.isArray(value) || value.length > maxLength) fail(`${what}.${field}`, `an array of at most ${maxLength} items`, value)
  return value.map((v, i) => item(v, `${what}.${field}[${i}]`))
}

/** Reads an optional array; undefined when absent. */
export function readOptList<T> (obj: Fields, field: string, what: string, item: (value: unknown, path: string) => T, maxLength = MAX_LIST_LENGTH): T[] | undefined {
  return obj[field] == null ? undefined : readList(obj, field, what, item, maxLength)
}

/** Item reader for readList: a safe integer >= min. */
export function intItem (min = 0): (value: unknown, path: string) => number {
  return (value, path) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) fail(path, `an integer >= ${min}`, value)
    return value
  }
}

/** Item reader for readList: a string of 1..maxLength characters matching `pattern` when given. */
export function stringItem (maxLength: number, pattern?: RegExp, expected?: string): (value: unknown, path: string) => string {
  return (value, path) => {
    if (typeof value !== 'string' || value.length === 0 || value.length > maxLength || (pattern !== undefined && !pattern.test(value))) {
      fail(path, expected ?? `a non-empty string of at most ${maxLength} characters`, value)
    }
    return value
  }
}

/**
 * Reads optional token-tree parents of a run with `rows` rows (model/token-tree.ts):
 * undefined when absent; BAD_MESSAGE unless each is an earlier row or -1.
 */
export function readOptParents (obj: Fields, field: string, what: string, rows: number): number[] | undefined {
  const parents = readOptList(obj, field, what, intItem(-1), MAX_TREE_ROWS)
  if (parents === undefined) return undefined
  const problem = parentsProblem(parents, rows)
  if (problem !== undefined) throw new BadMessageError(`Invalid ${what}.${field}: ${problem}`)
  return parents
}
