/**
 * DHT keys. A server announces each block it serves as a provider record of
 * blockCid(modelId, blockIndex); clients look the same CIDs up.
 */
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { PROTOCOL_VERSION } from './ids.js'

/**
 * Canonical string of a block: `petal/1/${modelId}/block/${blockIndex}`.
 * The model id is taken as is (case and slashes matter).
 */
export function blockKey (modelId: string, blockIndex: number): string {
  if (typeof modelId !== 'string' || modelId.length === 0) {
    throw new TypeError(`Cannot make a block key: modelId must be a non-empty string, got ${JSON.stringify(modelId)}`)
  }
  if (!Number.isSafeInteger(blockIndex) || blockIndex < 0) {
    throw new RangeError(`Cannot make a block key: blockIndex must be an integer >= 0, got ${blockIndex}`)
  }
  return `petal/${PROTOCOL_VERSION}/${modelId}/block/${blockIndex}`
}

/** CIDv1, raw codec, sha256 of blockKey(modelId, blockIndex): stable across processes and versions of this code. */
export function blockCid (modelId: string, blockIndex: number): CID {
  const hash = createHash('sha256').update(blockKey(modelId, blockIndex), 'utf8').digest()
  return CID.createV1(raw.code, createDigest(sha256.code, new Uint8Array(hash)))
}
