/**
 * A client's share of a checkpoint: what `LanguageModel.swarm` needs to generate through a
 * swarm (config, tokenizer, generation settings, chat template, embedding, final norm and LM
 * head) without the blocks, which are most of a big model's bytes; plus the blocks' weight
 * hashes, so that the client still refuses servers whose weights differ.
 *
 *   DIR/model.safetensors        the client tensors, bytes and dtypes as stored
 *   DIR/petal_client.json        { modelId, numBlocks, blockHashes } of the whole checkpoint
 *   DIR/<every other small file> config.json, tokenizer.json, ... copied
 */
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { Checkpoint } from './checkpoint.js'
import { CheckpointError } from './errors.js'
import { encodeSafetensorsHeader, readTensorChunks, type TensorEntry } from './safetensors.js'
import { CLIENT_TENSOR_NAMES } from './weights.js'

/** The file that names the model and its blocks' hashes. */
export const CLIENT_MANIFEST = 'petal_client.json'

/** Files of a checkpoint that are not copied: the weights (rewritten) and anything this big. */
const MAX_COPIED_BYTES = 64 * 2 ** 20

export interface ClientManifest {
  /** The model id servers announce (the checkpoint folder's name, or --model-id). */
  modelId: string
  numBlocks: number
  /** sha256 hex of each block's stored bytes (Checkpoint.blockWeightsHash). */
  blockHashes: string[]
}

export interface ClientExport {
  /** Bytes of the client tensors written, and of every tensor of the checkpoint. */
  clientBytes: number
  checkpointBytes: number
  copied: string[]
  manifest: ClientManifest
}

/** Writes the client parts of the checkpoint in `from` into the new or empty folder `to`. */
export function exportClientParts (from: string, to: string, opts: { modelId?: string, onBlockHashed?: (done: number, total: number) => void } = {}): ClientExport {
  const ckpt = Checkpoint.open(from)
  if (existsSync(to) && readdirSync(to).length > 0) throw new CheckpointError(`${to}: the folder is not empty; export the client parts into a new one`)
  mkdirSync(to, { recursive: true })
  const names = [CLIENT_TENSOR_NAMES.embedding, CLIENT_TENSOR_NAMES.finalNorm, ...(ckpt.has(CLIENT_TENSOR_NAMES.lmHead) ? [CLIENT_TENSOR_NAMES.lmHead] : [])]
  const entries = names.map(name => {
    const entry = ckpt.tensorInfo(name)
    if (entry === undefined) throw new CheckpointError(`${from}: tensor "${name}" is missing`)
    return entry
  })
  const clientBytes = writeTensors(join(to, 'model.safetensors'), entries)
  const copied: string[] = []
  for (const file of readdirSync(from)) {
    const path = join(from, file)
    if (/\.safetensors(\.index\.json)?$/.test(file) || file === CLIENT_MANIFEST || !statSync(path).isFile() || statSync(path).size > MAX_COPIED_BYTES) continue
    copyFileSync(path, join(to, file))
    copied.push(file)
  }
  const numBlocks = ckpt.config.numLayers
  const blockHashes = Array.from({ length: numBlocks }, (_, i) => {
    const hash = ckpt.blockWeightsHash(i)
    opts.onBlockHashed?.(i + 1, numBlocks)
    return hash
  })
  const manifest: ClientManifest = { modelId: opts.modelId ?? basename(from), numBlocks, blockHashes }
  writeFileSync(join(to, CLIENT_MANIFEST), JSON.stringify(manifest, null, 2) + '\n')
  const checkpointBytes = ckpt.tensorNames().reduce((n, name) => n + (ckpt.tensorInfo(name)?.byteLength ?? 0), 0)
  return { clientBytes, checkpointBytes, copied, manifest }
}

/** The manifest of an exported client folder, checked; undefined for a folder without one. */
export function readClientManifest (dir: string): ClientManifest | undefined {
  const file = join(dir, CLIENT_MANIFEST)
  if (!existsSync(file)) return undefined
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new CheckpointError(`${file}: not JSON: ${(err as Error).message}`, { cause: err })
  }
  const m = raw as Partial<ClientManifest> | null
  if (typeof m?.modelId !== 'string' || m.modelId === '' || !Number.isInteger(m.numBlocks) || !Array.isArray(m.blockHashes) ||
    m.blockHashes.length !== m.numBlocks || !m.blockHashes.every(h => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) {
    throw new CheckpointError(`${file}: expected { modelId, numBlocks, blockHashes: numBlocks sha256 hex strings }`)
  }
  return m as ClientManifest
}

/** Writes a safetensors file of these tensors, bytes as stored; returns the tensor bytes written. */
function writeTensors (file: string, entries: readonly TensorEntry[]): number {
  const { header } = encodeSafetensorsHeader(entries.map(e => ({ name: e.name, dtype: e.dtype, shape: e.shape })))
  const fd = openSync(file, 'w')
  let bytes = 0
  try {
    writeSync(fd, header)
    for (const entry of entries) {
      readTensorChunks(entry, chunk => { writeSync(fd, chunk); bytes += chunk.byteLength })
    }
  } finally {
    closeSync(fd)
  }
  return bytes
}
