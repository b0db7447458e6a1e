import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { blockCid, blockKey } from '../../protocol/dht-keys.js'
import { PETAL_VERSION } from '../../protocol/ids.js'

describe('DHT keys', () => {
  it('uses a canonical string', () => {
    expect(blockKey('org/model', 3)).toBe('petal/1/org/model/block/3')
  })

  it('makes a stable CIDv1 raw sha256 per block', () => {
    const cid = blockCid('org/model', 3)
    expect(cid.version).toBe(1)
    expect(cid.code).toBe(0x55) // raw
    expect(cid.multihash.code).toBe(0x12) // sha2-256
    expect(cid.equals(blockCid('org/model', 3))).toBe(true)
    const digest = createHash('sha256').update('petal/1/org/model/block/3').digest()
    expect(Buffer.from(cid.multihash.digest).equals(digest)).toBe(true)
    // pinned: changing this value orphans every announced provider record
    expect(cid.toString()).toBe('bafkreicxo6wj2gz2kwaa2vlgo34pkczyncxp4q7s3fxla4r37fvrlmqkoq')
  })

  it('differs per block and per model', () => {
    const seen = new Set<string>()
    for (const model of ['org/model', 'org/Model', 'org/model2']) {
      for (let i = 0; i < 50; i++) seen.add(blockCid(model, i).toString())
    }
    expect(seen.size).toBe(150)
    expect(blockCid('a/b', 12).toString()).not.toBe(blockCid('a/b1', 2).toString())
  })

  it('rejects bad inputs', () => {
    expect(() => blockKey('', 0)).toThrow(TypeError)
    expect(() => blockKey('m', -1)).toThrow(RangeError)
    expect(() => blockKey('m', 1.5)).toThrow(RangeError)
  })

  it('reports the package version', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(PETAL_VERSION).toBe(pkg.version)
  })
})
