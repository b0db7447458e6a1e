import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseCount, shapeForParams, writeRandomLlama } from '../make-random-llama.js'

const CACHE = fileURLToPath(new URL('../../.cache/models', import.meta.url))

/** The folder of a seeded random Llama of about `size` parameters ("200M"), written once into .cache/. */
export function ensureRandomModel (size: string): string {
  const dir = join(CACHE, `random-${size.toLowerCase()}`)
  if (!existsSync(join(dir, 'config.json'))) {
    process.stderr.write(`writing ${dir} (random ${size} Llama, once)\n`)
    writeRandomLlama({ ...shapeForParams(parseCount(size), {}), out: dir, seed: 0 })
  }
  return dir
}
