import { readFileSync } from 'node:fs'
import { CheckpointError } from './errors.js'

/** Parses a JSON file of a checkpoint folder; undefined when it does not exist, a CheckpointError naming the file otherwise. */
export function readOptionalJson (file: string): unknown {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') return undefined
    throw new CheckpointError(`${file}: cannot read: ${err.message}`, { cause: err })
  }
  try {
    return JSON.parse(text)
  } catch (err: any) {
    throw new CheckpointError(`${file}: not valid JSON: ${err.message}`, { cause: err })
  }
}
