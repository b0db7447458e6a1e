/** Temp folders and hand-made safetensors files for the checkpoint tests. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fromFloat32, type FloatDtype } from '../../model/dtype.js'
import { encodeSafetensorsHeader } from '../../model/safetensors.js'

export const STORIES_DIR = fileURLToPath(new URL('../../models/stories260k', import.meta.url))
export const SHARED_MODELS = '/work/shared/models'

const made: string[] = []

/** A fresh folder under os.tmpdir(); removed by `removeTempDirs()`. */
export function tempDir (label = 'ckpt'): string {
  const dir = mkdtempSync(join(tmpdir(), `petal-${label}-`))
  made.push(dir)
  return dir
}

/** Removes every folder `tempDir` made (call from afterAll). */
export function removeTempDirs (): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** A writable copy of a checkpoint folder. */
export function copyModel (src: string): string {
  const dir = tempDir('copy')
  cpSync(src, dir, { recursive: true })
  return dir
}

/** Rewrites config.json of `dir` through `edit`. */
export function editConfig (dir: string, edit: (cfg: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json')
  const cfg = JSON.parse(readFileSync(file, 'utf8'))
  edit(cfg)
  writeFileSync(file, JSON.stringify(cfg))
}

/**
 * Rewrites a safetensors file's JSON header through `edit`, keeping the data bytes as they are
 * (offsets are relative to the data, so untouched entries stay valid).
 */
export function editHeader (file: string, edit: (header: Record<string, any>) => void): void {
  const bytes = readFileSync(file)
  const n = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))
  edit(header)
  let text = JSON.stringify(header)
  text += ' '.repeat((8 - (text.length % 8)) % 8)
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)))
  writeFileSync(file, Buffer.concat([len, Buffer.from(text), bytes.subarray(8 + n)]))
}

/** A tensor to write: values are stored in `dtype`. */
export interface TestTensor { name: string, dtype: FloatDtype, shape: number[], values: Float32Array }

/** Writes a well-formed safetensors file with the given tensors, in order. */
export function writeSafetensors (file: string, tensors: TestTensor[]): void {
  const { header } = encodeSafetensorsHeader(tensors)
  writeFileSync(file, Buffer.concat([header, ...tensors.map(t => fromFloat32(t.dtype, t.values))]))
}
