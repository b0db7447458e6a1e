import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The read-only model fixtures made with Hugging Face transformers. */
export const SHARED_MODELS = join(import.meta.dirname, '..', '..', '..', 'shared', 'models')
/** The bundled demo model inside the project. */
export const BUNDLED_MODEL = join(import.meta.dirname, '..', '..', 'models', 'stories260k')

export function fixtureDir (name: 'stories260k' | 'stories260k-draft' | 'tiny-llama-gqa'): string {
  return join(SHARED_MODELS, name)
}

export function readReference (name: 'stories260k' | 'stories260k-draft' | 'tiny-llama-gqa'): any {
  return JSON.parse(readFileSync(join(fixtureDir(name), 'reference.json'), 'utf8'))
}

/** max |a - b| over two equally long rows */
export function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)))
  return m
}

export function maxAbsDiffRows (a: ArrayLike<ArrayLike<number>>, b: ArrayLike<ArrayLike<number>>): number {
  if (a.length !== b.length) throw new Error(`row count mismatch: ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, maxAbsDiff(a[i] as ArrayLike<number>, b[i] as ArrayLike<number>))
  return m
}

export function argmax (row: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i
  return best
}
