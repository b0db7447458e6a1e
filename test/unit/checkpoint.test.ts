import { closeSync, ftruncateSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { blockParameterCount } from '../../model/config.js'
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../model/dtype.js'
import { CheckpointError } from '../../model/errors.js'
import { blockTensorNames, type BlockWeights } from '../../model/weights.js'
import { writeRandomLlama, type RandomLlamaOptions } from '../../scripts/make-random-llama.js'
import { SHARED_MODELS, STORIES_DIR, copyModel, editConfig, editHeader, removeTempDirs, tempDir } from '../helpers/ckpt-files.js'

afterAll(removeTempDirs)

function expectCheckpointError (fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  expect(caught).toBeInstanceOf(CheckpointError)
  expect((caught as CheckpointError).code).toBe('ERR_CHECKPOINT')
  for (const f of fragments) expect((caught as Error).message).toContain(f)
}

const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))

describe('Checkpoint on the fixtures', () => {
  it('opens stories260k and reads every block with the shapes from config', () => {
    const ckpt = Checkpoint.open(STORIES_DIR)
    const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D, numLayers: L } = ckpt.config
    expect([C, F, H, Hkv, D, L]).toEqual([64, 172, 8, 4, 8, 5])
    expect(ckpt.tensorNames()).toHaveLength(47)
    expect(ckpt.has('lm_head.weight')).toBe(false)
    const blocks = ckpt.readBlocks(0, L)
    const sizes = { inputNorm: C, q: H * D * C, k: Hkv * D * C, v: Hkv * D * C, o: C * H * D, postNorm: C, gate: F * C, up: F * C, down: C * F }
    for (const b of blocks) for (const [key, n] of Object.entries(sizes)) expect(b[key as keyof BlockWeights]).toHaveLength(n)
    expect(ckpt.blockByteSize(0)).toBe(4 * blockParameterCount(ckpt.config))
  })

  it('reads the bytes stored at the tensor offset', () => {
    const ckpt = Checkpoint.open(STORIES_DIR)
    const name = blockTensorNames(3).gate
    const info = ckpt.tensorInfo(name)!
    const raw = readFileSync(info.file).subarray(info.offset, info.offset + info.byteLength)
    const got = ckpt.readTensor(name, [172, 64])
    expect(sameBits(got, new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)))).toBe(true)
    expect(ckpt.readBlock(3).gate).toEqual(got)
  })

  it('ties the LM head to the embedding for stories260k, and reads lm_head for tiny-llama-gqa', () => {
    const tied = Checkpoint.open(STORIES_DIR).readClientWeights()
    expect(tied.lmHead).toBe(tied.embedding)
    expect(tied.embedding).toHaveLength(512 * 64)
    const untied = Checkpoint.open(join(SHARED_MODELS, 'tiny-llama-gqa')).readClientWeights()
    expect(untied.lmHead).not.toBe(untied.embedding)
    expect(untied.lmHead).toHaveLength(512 * 128)
    expect(untied.finalNorm).toHaveLength(128)
  })

  it('reports progress over a span, counting only that span\'s bytes', () => {
    const ckpt = Checkpoint.open(join(SHARED_MODELS, 'tiny-llama-gqa'))
    const calls: Array<[number, number]> = []
    ckpt.readBlocks(2, 4, { onProgress: (done, total) => calls.push([done, total]) })
    const spanBytes = 2 * ckpt.blockByteSize(0) // stored as F32, so stored bytes == float32 bytes
    expect(calls[0]).toEqual([0, spanBytes])
    expect(calls.at(-1)).toEqual([spanBytes, spanBytes])
    for (let j = 1; j < calls.length; j++) expect(calls[j]![0]).toBeGreaterThanOrEqual(calls[j - 1]![0])
  })

  it('hashes a block\'s stored bytes: stable, different per block', () => {
    const ckpt = Checkpoint.open(STORIES_DIR)
    const h0 = ckpt.blockWeightsHash(0)
    expect(h0).toMatch(/^[0-9a-f]{64}$/)
    expect(ckpt.blockWeightsHash(0)).toBe(h0)
    expect(ckpt.blockWeightsHash(1)).not.toBe(h0)
  })

  it('refuses block indices out of range', () => {
    const ckpt = Checkpoint.open(STORIES_DIR)
    expect(() => ckpt.readBlock(5)).toThrow(/Cannot read blocks \[5, 6\): .* has 5 blocks/)
    expect(() => ckpt.readBlocks(-1, 2)).toThrow(RangeError)
    expect(() => ckpt.readBlocks(3, 3)).toThrow(RangeError)
    expect(() => ckpt.blockByteSize(7)).toThrow(RangeError)
    expect(() => ckpt.blockWeightsHash(1.5)).toThrow(RangeError)
  })
})

describe('Checkpoint on random checkpoints from make-random-llama', () => {
  const shape = { hiddenSize: 48, numLayers: 3, numHeads: 6, numKvHeads: 2, intermediateSize: 80, vocabSize: 96, headDim: 16, tied: true, seed: 7 }
  const write = (extra: Partial<RandomLlamaOptions>): string => {
    const out = tempDir('random')
    writeRandomLlama({ ...shape, out, ...extra })
    return out
  }

  it('BF16 in 3 shards reads back the bf16-rounded f32 draws of the same seed; F16 likewise', () => {
    const f32 = Checkpoint.open(write({ dtype: 'f32' }))
    const bf16 = Checkpoint.open(write({ dtype: 'bf16', shards: 3 }))
    const f16 = Checkpoint.open(write({ dtype: 'f16', shards: 2 }))
    expect(bf16.config).toEqual(f32.config)
    expect(bf16.config.tieWordEmbeddings).toBe(true)
    expect(bf16.has('lm_head.weight')).toBe(false)
    expect(new Set(bf16.tensorNames().map(n => bf16.tensorInfo(n)!.file)).size).toBe(3)
    for (let i = 0; i < 3; i++) {
      const want = f32.readBlock(i)
      const gotBf = bf16.readBlock(i)
      const gotF16 = f16.readBlock(i)
      for (const key of Object.keys(want) as Array<keyof BlockWeights>) {
        expect(sameBits(gotBf[key]!, bf16ToF32(f32ToBf16(want[key]!)))).toBe(true)
        expect(sameBits(gotF16[key]!, f16ToF32(f32ToF16(want[key]!)))).toBe(true)
      }
    }
    const client = bf16.readClientWeights()
    expect(client.lmHead).toBe(client.embedding)
    expect(sameBits(client.embedding, bf16ToF32(f32ToBf16(f32.readClientWeights().embedding)))).toBe(true)
    const norm = f32.readBlock(1).inputNorm
    expect(Math.min(...norm)).toBeGreaterThan(0.5) // norms near 1, matrices near 0
    expect(Math.max(...f32.readBlock(1).q.map(Math.abs))).toBeLessThan(0.2)
  })

  it('block hashes depend on the stored bytes, not on how the files are sharded', () => {
    const one = Checkpoint.open(write({ dtype: 'bf16' }))
    const three = Checkpoint.open(write({ dtype: 'bf16', shards: 3 }))
    const f32 = Checkpoint.open(write({ dtype: 'f32' }))
    const other = Checkpoint.open(write({ dtype: 'bf16', seed: 8 }))
    expect(three.blockWeightsHash(2)).toBe(one.blockWeightsHash(2))
    expect(f32.blockWeightsHash(2)).not.toBe(one.blockWeightsHash(2))
    expect(other.blockWeightsHash(2)).not.toBe(one.blockWeightsHash(2))
  })
})

describe('bad checkpoints get a CheckpointError naming the file and what is wrong', () => {
  const stories = (): string => copyModel(STORIES_DIR)
  const weights = (dir: string): string => join(dir, 'model.safetensors')

  it('config.json: missing, missing field, wrong value, unknown architecture', () => {
    const none = tempDir()
    expectCheckpointError(() => Checkpoint.open(none), join(none, 'config.json'), 'file not found')
    const a = stories()
    editConfig(a, c => { delete c.hidden_size })
    expectCheckpointError(() => Checkpoint.open(a), join(a, 'config.json'), 'field "hidden_size" is missing')
    const b = stories()
    editConfig(b, c => { c.num_key_value_heads = 3 })
    expectCheckpointError(() => Checkpoint.open(b), join(b, 'config.json'), 'field "num_key_value_heads" must divide num_attention_heads (8)')
    const c = stories()
    editConfig(c, cfg => { cfg.architectures = ['GPT2LMHeadModel'] })
    expectCheckpointError(() => Checkpoint.open(c), join(c, 'config.json'), 'field "architectures" is not supported')
  })

  it('no weights file at all', () => {
    const dir = stories()
    rmSync(weights(dir))
    expectCheckpointError(() => Checkpoint.open(dir), dir, 'no model.safetensors or model.safetensors.index.json')
  })

  it('missing tensor, and an untied model without lm_head', () => {
    const dir = stories()
    const name = blockTensorNames(2).up
    editHeader(weights(dir), h => { delete h[name] })
    const ckpt = Checkpoint.open(dir)
    expect(() => ckpt.readBlock(1)).not.toThrow() // a span reads only its own tensors
    expectCheckpointError(() => ckpt.readBlock(2), dir, `tensor "${name}" is missing (not in model.safetensors)`)
    expectCheckpointError(() => ckpt.readTensor('nope', [1]), dir, 'tensor "nope" is missing')
    const gqa = copyModel(join(SHARED_MODELS, 'tiny-llama-gqa'))
    editHeader(weights(gqa), h => { delete h['lm_head.weight'] })
    expectCheckpointError(() => Checkpoint.open(gqa).readClientWeights(), gqa, 'tensor "lm_head.weight" is missing and config.json has tie_word_embeddings false')
  })

  it('wrong tensor shape (same byte count)', () => {
    const dir = stories()
    const name = blockTensorNames(4).q
    editHeader(weights(dir), h => { h[name].shape = [32, 128] })
    const ckpt = Checkpoint.open(dir)
    expectCheckpointError(() => ckpt.readBlock(4), weights(dir), `tensor "${name}" has shape [32, 128], expected [64, 64]`)
    expectCheckpointError(() => ckpt.blockWeightsHash(4), weights(dir), 'has shape [32, 128]')
    expectCheckpointError(() => ckpt.readTensor(name, [64, 64]), 'expected [64, 64]')
  })

  it('truncated file, corrupt header, unknown dtype', () => {
    const a = stories()
    const fd = openSync(weights(a), 'r+')
    ftruncateSync(fd, statSync(weights(a)).size - 100)
    closeSync(fd)
    expectCheckpointError(() => Checkpoint.open(a), weights(a), 'past the end of the file', 'file is truncated')
    const b = stories()
    const bytes = readFileSync(weights(b))
    bytes[8] = 0x21 // '{' -> '!'
    writeFileSync(weights(b), bytes)
    expectCheckpointError(() => Checkpoint.open(b), weights(b), 'header is not valid JSON')
    bytes.writeBigUInt64LE(10n ** 9n, 0)
    writeFileSync(weights(b), bytes)
    expectCheckpointError(() => Checkpoint.open(b), weights(b), `header is truncated (file has ${bytes.byteLength} bytes, header claims 1000000000)`)
    const c = stories()
    editHeader(weights(c), h => { h['model.layers.0.mlp.up_proj.weight'].dtype = 'I8' })
    expectCheckpointError(() => Checkpoint.open(c), weights(c), 'tensor "model.layers.0.mlp.up_proj.weight" has dtype I8, supported: F32, F16, BF16')
  })

  it('sharded: missing shard, tensor absent from its shard, bad index', () => {
    const dir = tempDir('random')
    writeRandomLlama({ out: dir, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 64, shards: 3 })
    const index = join(dir, 'model.safetensors.index.json')
    const original = readFileSync(index, 'utf8')
    const shard2 = join(dir, 'model-00002-of-00003.safetensors')
    const saved = readFileSync(shard2)
    rmSync(shard2)
    expectCheckpointError(() => Checkpoint.open(dir), index, 'shard "model-00002-of-00003.safetensors" named in weight_map does not exist')
    writeFileSync(shard2, saved)
    const parsed = JSON.parse(original)
    parsed.weight_map['model.norm.weight'] = 'model-00001-of-00003.safetensors'
    writeFileSync(index, JSON.stringify(parsed))
    expectCheckpointError(() => Checkpoint.open(dir), join(dir, 'model-00001-of-00003.safetensors'), 'tensor "model.norm.weight" is missing (model.safetensors.index.json places it in this shard)')
    writeFileSync(index, '{"weight_map": ')
    expectCheckpointError(() => Checkpoint.open(dir), index, 'index is not valid JSON')
    writeFileSync(index, '{"weight_map": {"a": 3}}')
    expectCheckpointError(() => Checkpoint.open(dir), index, '"weight_map" must map tensor names to shard file names')
    writeFileSync(index, original)
    expect(Checkpoint.open(dir).readBlock(1).down).toHaveLength(32 * 64)
  })
})
