/** A server of many blocks still answers info: the reply carries a hash per block. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPetalHost, type PetalHost } from '../../net/host.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { PetalServer } from '../../node/server.js'
import { writeRandomLlama } from '../../scripts/make-random-llama.js'

describe('info of a 40-block server', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'petal-deep-')), 'deep')
  let server: PetalServer
  let client: PetalHost

  beforeAll(async () => {
    writeRandomLlama({ out: dir, hiddenSize: 32, numLayers: 40, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 512, seed: 3 })
    server = new PetalServer({ modelDir: dir, blocks: { start: 0, end: 40 }, throughput: { decodeTokensPerSec: 1, prefillTokensPerSec: 1 } })
    await server.start()
    client = await createPetalHost({ dhtServer: false, bootstrap: [server.address] })
  })
  afterAll(async () => {
    await client?.stop()
    await server?.stop()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  it('lists all 40 block hashes', async () => {
    const info = await fetchServerInfo(client, server.address)
    expect(info.blockHashes).toHaveLength(40)
    expect(info.end).toBe(40)
  })
})
