import { UsageError } from './cli-error.js'

/** "1,2,3" -> [1, 2, 3]; anything that is not a non-negative integer is a usage error. */
export function parseIntList (text: string, flag: string): number[] {
  const parts = text.split(',').map(s => s.trim()).filter(s => s !== '')
  return parts.map(p => {
    const n = Number(p)
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be comma-separated non-negative integers: "${p}" is not one`)
    return n
  })
}

/** Parses a numeric flag value with bounds; commander passes strings. */
export function parseNumber (flag: string, opts: { integer?: boolean, min?: number, max?: number } = {}) {
  return (text: string): number => {
    const n = Number(text)
    const ok = Number.isFinite(n) && (opts.integer !== true || Number.isInteger(n)) &&
      (opts.min === undefined || n >= opts.min) && (opts.max === undefined || n <= opts.max)
    if (!ok) {
      const range = [opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' and ')
      throw new UsageError(`${flag} must be ${opts.integer === true ? 'an integer' : 'a number'}${range ? ' ' + range : ''}: current value is "${text}"`)
    }
    return n
  }
}

/** "127.0.0.1:8000", "[::1]:8000" or ":8000" (all interfaces) -> host and port. */
export function parseHostPort (text: string, flag: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text)
  const port = Number(m?.[3])
  if (m === null || !Number.isInteger(port) || port > 65535) throw new UsageError(`${flag} must be host:port (e.g. 127.0.0.1:8000): current value is "${text}"`)
  return { host: m[1] ?? (m[2] === '' ? '0.0.0.0' : m[2] as string), port }
}
