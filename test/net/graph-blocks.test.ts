/** A server that runs several blocks per ORT session serves only sessions cut at those boundaries, and says so. */
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { PetalServer } from '../../node/server.js'
import { decodeTensor } from '../../protocol/tensor-codec.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

describe('--graph-blocks', () => {
  let server: PetalServer
  let client: Libp2p
  beforeAll(async () => {
    server = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 5 }, graphBlocks: 2, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 10000 } })
    await server.start()
    client = await bareNode()
  })
  afterAll(async () => {
    await client?.stop()
    await server?.stop()
  })

  it('announces its cut points, refuses a session that cuts elsewhere, and computes the same numbers', async () => {
    expect((await fetchServerInfo(client, server.address)).graphBlocks).toBe(2)
    const bad = await inferenceStream(client, server.address)
    await bad.write({ type: 'open', modelId: 'stories260k', start: 1, end: 5, maxTokens: 16 })
    expect(await next(bad)).toMatchObject({ type: 'error', code: 'WRONG_SPAN' })
    const good = await inferenceStream(client, server.address)
    await openSession(good, 'stories260k', 2, 5)
    const x = randomHidden(4, 64)
    await good.write(runFrame(0, 0, x, 64))
    const out = decodeTensor((await next(good)).hidden).data
    const perBlock = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 2, 5)
    const expected = await perBlock.forward(x, perBlock.newCache(), 0)
    let maxDiff = 0
    for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs((out[i] as number) - (expected[i] as number)))
    expect(maxDiff).toBeLessThan(1e-5)
    await perBlock.release()
    await good.close()
    await bad.close()
  })
})
