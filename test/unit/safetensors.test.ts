import { closeSync, ftruncateSync, openSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../model/dtype.js'
import { CheckpointError } from '../../model/errors.js'
import { parseSafetensorsHeader, readSafetensorsHeader, readTensorChunks, readTensorF32 } from '../../model/safetensors.js'
import { STORIES_DIR, editHeader, removeTempDirs, tempDir, writeSafetensors } from '../helpers/ckpt-files.js'

afterAll(removeTempDirs)

const ramp = (n: number, scale = 0.01): Float32Array => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale)

/** Asserts that `fn` throws a CheckpointError whose message contains every fragment. */
function expectCheckpointError (fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  expect(caught).toBeInstanceOf(CheckpointError)
  expect((caught as CheckpointError).code).toBe('ERR_CHECKPOINT')
  for (const f of fragments) expect((caught as Error).message).toContain(f)
}

describe('safetensors header', () => {
  it('reads the stories260k header: 47 tensors, absolute offsets, no data read', () => {
    const { tensors, fileSize } = readSafetensorsHeader(join(STORIES_DIR, 'model.safetensors'))
    expect(tensors.size).toBe(1 + 5 * 9 + 1)
    const emb = tensors.get('model.embed_tokens.weight')!
    expect(emb).toMatchObject({ dtype: 'F32', shape: [512, 64], offset: 8 + 4848, byteLength: 512 * 64 * 4 })
    const last = [...tensors.values()].reduce((a, b) => (a.offset > b.offset ? a : b))
    expect(last.offset + last.byteLength).toBe(fileSize)
  })

  it('writes and reads back F32, F16 and BF16 tensors, ignoring __metadata__', () => {
    const file = join(tempDir(), 'mixed.safetensors')
    const v = ramp(30)
    writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [5, 6], values: v },
      { name: 'b', dtype: 'F16', shape: [30], values: v },
      { name: 'c', dtype: 'BF16', shape: [2, 3, 5], values: v },
      { name: 'empty', dtype: 'F32', shape: [0, 4], values: new Float32Array(0) }
    ])
    const { tensors } = readSafetensorsHeader(file)
    expect([...tensors.keys()]).toEqual(['a', 'b', 'c', 'empty'])
    expect(readTensorF32(tensors.get('a')!)).toEqual(v)
    expect(readTensorF32(tensors.get('b')!)).toEqual(f16ToF32(f32ToF16(v)))
    expect(readTensorF32(tensors.get('c')!)).toEqual(bf16ToF32(f32ToBf16(v)))
    expect(readTensorF32(tensors.get('empty')!)).toHaveLength(0)
  })

  it('reads tensors larger than one 16 MiB chunk, reporting progress per chunk', () => {
    const file = join(tempDir(), 'big.safetensors')
    const n = 9_000_000 // 18 MB as BF16: two chunks
    const v = ramp(n, 1e-6)
    writeSafetensors(file, [{ name: 'pad', dtype: 'F16', shape: [3], values: ramp(3) }, { name: 'big', dtype: 'BF16', shape: [n], values: v }])
    const entry = readSafetensorsHeader(file).tensors.get('big')!
    const progress: number[] = []
    const got = readTensorF32(entry, b => progress.push(b))
    const want = bf16ToF32(f32ToBf16(v))
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true) // toEqual is slow at this size
    expect(progress).toEqual([16 << 20, 2 * n])
    let seen = 0
    readTensorChunks(entry, (chunk, at) => { expect(at).toBe(seen); seen += chunk.byteLength })
    expect(seen).toBe(2 * n)
  })
})

describe('safetensors refusals name the file and what is wrong', () => {
  const file = '/x/model.safetensors'
  const parse = (header: unknown, fileSize = 1000): unknown => parseSafetensorsHeader(header, file, 8, fileSize)
  const entry = (e: object): unknown => ({ t: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16], ...e } })

  it('unknown dtype', () => {
    expectCheckpointError(() => parse(entry({ dtype: 'I8' })), file, 'tensor "t" has dtype I8, supported: F32, F16, BF16')
    expectCheckpointError(() => parse(entry({ dtype: undefined })), file, 'tensor "t" has no dtype')
  })

  it('bad shapes and offsets', () => {
    expectCheckpointError(() => parse(entry({ shape: [2, -2] })), file, 'invalid shape [2,-2]')
    expectCheckpointError(() => parse(entry({ shape: [1.5] })), file, 'invalid shape')
    expectCheckpointError(() => parse(entry({ data_offsets: [16, 0] })), file, 'invalid data_offsets')
    expectCheckpointError(() => parse(entry({ data_offsets: [0, 12] })), file, 'data_offsets [0, 12] (12 bytes) but shape [2, 2] of F32 needs 16 bytes')
    expectCheckpointError(() => parse(entry({ data_offsets: [990, 1006] })), file, 'past the end of the file (1000 bytes): file is truncated')
    expectCheckpointError(() => parse([1, 2]), file, 'header must be a JSON object')
    expect(parse({ __metadata__: { format: 'pt' } })).toEqual(new Map())
  })

  it('files too short, headers past the end, over the limit, not JSON', () => {
    const dir = tempDir()
    const write = (name: string, bytes: Uint8Array): string => { writeFileSync(join(dir, name), bytes); return join(dir, name) }
    const lenThen = (len: bigint, rest: string): Buffer => {
      const b = Buffer.alloc(8 + rest.length)
      b.writeBigUInt64LE(len)
      b.write(rest, 8)
      return b
    }
    const tiny = write('tiny.safetensors', new Uint8Array(5))
    expectCheckpointError(() => readSafetensorsHeader(tiny), tiny, 'file is truncated (file has 5 bytes')
    const short = write('short.safetensors', lenThen(4000n, '{"a"'))
    expectCheckpointError(() => readSafetensorsHeader(short), short, 'header is truncated (file has 12 bytes, header claims 4000)')
    const huge = write('huge.safetensors', lenThen(2n ** 64n - 1n, '{}'))
    expectCheckpointError(() => readSafetensorsHeader(huge), huge, 'header is truncated')
    const notJson = write('bad.safetensors', lenThen(8n, '{"a": 1,'))
    expectCheckpointError(() => readSafetensorsHeader(notJson), notJson, 'header is not valid JSON')
    const sparse = write('sparse.safetensors', lenThen(150_000_000n, '{}'))
    const fd = openSync(sparse, 'r+')
    ftruncateSync(fd, 200_000_000) // sparse: costs no disk
    closeSync(fd)
    expectCheckpointError(() => readSafetensorsHeader(sparse), sparse, 'header length 150000000 is over the limit')
    expectCheckpointError(() => readSafetensorsHeader(join(dir, 'none.safetensors')), 'none.safetensors', 'file not found')
  })

  it('a truncated data section and an unknown dtype in a real file', () => {
    const dir = tempDir()
    const file = join(dir, 'm.safetensors')
    writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [4, 4], values: ramp(16) }])
    editHeader(file, h => { h.w.dtype = 'I8' })
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'tensor "w" has dtype I8')
    writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [4, 4], values: ramp(16) }])
    const fd = openSync(file, 'r+')
    ftruncateSync(fd, statSync(file).size - 10)
    closeSync(fd)
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'tensor "w" ends at byte', 'file is truncated')
  })
})
