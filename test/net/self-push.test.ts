/**
 * A route may use two parts of one server's span (a failover can plan that): a push to
 * the server itself goes straight to its other session, without a network hop.
 */
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { PetalServer } from '../../node/server.js'
import { decodeTensor } from '../../protocol/tensor-codec.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

const C = 64

describe('push to a session on the same server', () => {
  let server: PetalServer
  let client: Libp2p
  let local: SpanRunner

  beforeAll(async () => {
    server = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 5 }, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 10000 } })
    await server.start()
    client = await bareNode()
    local = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 5)
  })
  afterAll(async () => {
    await client?.stop()
    await server?.stop()
    await local?.release()
  })

  it('runs [0,2) then [2,5) of one server and returns both outputs', async () => {
    const a = await inferenceStream(client, server.address)
    const b = await inferenceStream(client, server.address)
    await openSession(a, 'stories260k', 0, 2)
    const sessionB = await openSession(b, 'stories260k', 2, 5)
    const x = randomHidden(3, C)
    await a.write(runFrame(0, 0, x, C, 'float32', { push: [{ peerId: server.host.peerId.toString(), sessionId: sessionB }] }))
    const outA = decodeTensor((await next(a)).hidden).data
    const outB = decodeTensor((await next(b)).hidden).data
    const mid = await local.forward(x, local.newCache(0, 2), 0)
    expect(Array.from(outA)).toEqual(Array.from(mid))
    expect(Array.from(outB)).toEqual(Array.from(await local.forward(mid, local.newCache(2, 5), 0)))
    await a.close()
    await b.close()
  })
})
